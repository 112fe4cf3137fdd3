"""Demo offers over the demo catalog (``seed_demo``): cross-sell rules, a segment of cat owners,
a promo pool and three offers with Russian texts. Idempotent: rows are matched by name.

Run with ``python manage.py offers_demo`` after ``seed_demo``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from crm.models import Category
from offers import services
from offers.models import CrossSellRule, Offer, OfferVariant, PromoPool
from segments.models import Segment
from segments.services import segment_save

CROSS_SELL = (
    # bought category slug, offered category slug, reason
    (
        "smartphones",
        "power-banks",
        "Вы недавно купили «{{ fact.product }}» — внешний аккумулятор выручит в дороге.",
    ),
    ("laptops", "laptop-bags", "К ноутбуку «{{ fact.product }}» пригодится сумка или рюкзак."),
    (
        "gaming-mice",
        "gaming-chairs",
        "Вы выбрали «{{ fact.product }}» — к игровой мыши стоит присмотреть удобное кресло.",
    ),
    (
        "gaming-mice",
        "gaming-keyboards",
        "К мыши «{{ fact.product }}» подойдёт игровая клавиатура.",
    ),
)

REPLENISH_SMS_A = (
    "{{ client.first_name }}, пора пополнить запас: {{ product.name }} — {{ benefit.text }} "
    "до {{ valid_until|date:'d.m' }}. Код {{ promo_code }}"
)
REPLENISH_SMS_B = (
    "{{ client.first_name }}, {{ benefit.text }} на корм для вашей кошки до "
    "{{ valid_until|date:'d.m' }}. Покажите код {{ promo_code }} на кассе"
)
REPLENISH_VOICE = (
    "Здравствуйте, {{ client.name }}! Это магазин «Лично». {{ reason }} "
    "Для вас {{ benefit.text }} на {{ product.name }} до {{ valid_until|date:'j E' }}. "
    "Назовите на кассе код {{ promo_code }}. Ждём вас!"
)
EMAIL_BODY = (
    "<p>{{ client.first_name }}, здравствуйте!</p><p>{{ reason }}</p>"
    "<ul>{% for p in products %}<li>{{ p.name }}: <s>{{ p.price|money }}</s> "
    "{{ p.price_with_benefit|money }}</li>{% endfor %}</ul>"
    "<p>Предложение действует до {{ valid_until|date:'d.m.Y' }}."
    "{% if promo_code %} Ваш код: <b>{{ promo_code }}</b>.{% endif %}</p>"
)
CROSS_SMS = (
    "{{ client.first_name }}, {{ product.name }}: {{ benefit.text }} до "
    "{{ valid_until|date:'d.m' }}. Заходите!"
)


@dataclass(frozen=True)
class DemoOffers:
    segment: Segment
    pool: PromoPool
    replenish: Offer
    cross_sell: Offer
    own_brand: Offer


def _variant(offer: Offer, name: str, **texts: object) -> None:
    OfferVariant.objects.update_or_create(offer=offer, name=name, defaults=texts)


@transaction.atomic
def offers_demo_setup(*, codes: int = 2000, now: dt.datetime | None = None) -> DemoOffers:
    now = now or timezone.now()
    slugs = {c.slug: c for c in Category.objects.all()}
    for source, target, reason in CROSS_SELL:
        if source in slugs and target in slugs:
            CrossSellRule.objects.update_or_create(
                source_category=slugs[source],
                target_category=slugs[target],
                defaults={"reason_text": reason, "is_active": True},
            )
    segment = Segment.objects.filter(name="Владельцы кошек").first() or Segment(
        name="Владельцы кошек", description="Клиенты, у которых есть кошка."
    )
    segment = segment_save(
        segment=segment,
        rules={
            "match": "all",
            "rules": [{"field": "pets", "operator": "any_of", "value": ["cat"]}],
        },
    )
    pool, created = PromoPool.objects.get_or_create(
        name="Демо: корм для кошек", defaults={"prefix": "CAT-", "code_length": 6}
    )
    if created and codes:
        services.promo_pool_generate(pool=pool, count=codes)
    window = {"starts_at": now - dt.timedelta(days=1), "ends_at": now + dt.timedelta(days=30)}

    replenish, _ = Offer.objects.update_or_create(
        name="Корм для кошек: пора пополнить запас",
        defaults={
            "goal": "replenish",
            "status": "active",
            "priority": 70,
            "channels": ["sms", "call", "email"],
            "strategy": "replenish",
            "fixed_category": slugs.get("cat-food"),
            "benefit_kind": "percent",
            "benefit_value": Decimal("10"),
            "holdout_percent": Decimal("10"),
            "promo_pool": pool,
            **window,
        },
    )
    replenish.segments.set([segment])
    _variant(
        replenish,
        "A",
        sms_text=REPLENISH_SMS_A,
        voice_script=REPLENISH_VOICE,
        email_subject="{{ client.first_name }}, {{ benefit.text }} на любимый корм",
        email_body=EMAIL_BODY,
        transliterate_sms=False,
    )
    _variant(
        replenish,
        "B",
        sms_text=REPLENISH_SMS_B,
        voice_script=REPLENISH_VOICE,
        email_subject="Корм заканчивается? {{ benefit.text|capfirst }}",
        email_body=EMAIL_BODY,
        transliterate_sms=True,
    )

    cross_sell, _ = Offer.objects.update_or_create(
        name="Дополните покупку",
        defaults={
            "goal": "cross_sell",
            "status": "active",
            "priority": 60,
            "channels": ["sms", "email"],
            "strategy": "cross_sell",
            "benefit_kind": "percent",
            "benefit_value": Decimal("7"),
            "recent_days": 30,
            "holdout_percent": Decimal("10"),
            **window,
        },
    )
    _variant(
        cross_sell,
        "A",
        sms_text=CROSS_SMS,
        voice_script="Здравствуйте, {{ client.name }}! {{ reason }} Для вас {{ benefit.text }}.",
        email_subject="{{ client.first_name }}, к вашей покупке",
        email_body=EMAIL_BODY,
    )

    own_brand, _ = Offer.objects.update_or_create(
        name="Попробуйте «Лично Выбор»",
        defaults={
            "goal": "own_brand",
            "status": "draft",
            "priority": 40,
            "channels": ["sms"],
            "strategy": "own_brand",
            "benefit_kind": "points",
            "benefit_value": Decimal("200"),
            **window,
        },
    )
    _variant(
        own_brand,
        "A",
        sms_text=(
            "{{ client.first_name }}, попробуйте {{ product.name }} — {{ benefit.text }} "
            "до {{ valid_until|date:'d.m' }}. Ждём вас!"
        ),
    )
    return DemoOffers(segment, pool, replenish, cross_sell, own_brand)
