"""Demo messaging over the demo offers (``offers_demo``): the active contact policy, a campaign
of the cat-food offer (weekly, ready to schedule), a plain-text campaign (ready to send now) and
one trigger scenario per kind (abandoned cart and birthday active).

Idempotent: rows are matched by name; existing rows are left as a marketer may have edited
them. Run with ``python manage.py messaging_demo`` after ``offers_demo``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django_celery_beat.models import CrontabSchedule

from messaging.models import (
    Campaign,
    ChannelRule,
    ContactPolicy,
    ScheduleKind,
    TriggerKind,
    TriggerScenario,
)
from messaging.services.admin_ops import contact_policy_activate
from offers.models import Offer
from segments.models import Segment

POLICY_NAME = "Стандартная политика"
OFFER_CAMPAIGN = "Корм для кошек: еженедельное напоминание"
PLAIN_CAMPAIGN = "Новости «Лично» для владельцев кошек"
AUTODIAL_CAMPAIGN = "Автообзвон: пора пополнить запас корма"
REPLENISH_OFFER = "Корм для кошек: пора пополнить запас"
CROSS_SELL_OFFER = "Дополните покупку"
CAT_SEGMENT = "Владельцы кошек"
LANDING = "https://lichno.example/shop"

# channel: limit, window days, weekdays from-until, weekends from-until (local hours)
CHANNEL_RULES = {
    "sms": (2, 7, (9, 21), (10, 20)),
    "call": (1, 7, (10, 20), (11, 18)),
    "email": (3, 7, (8, 22), (9, 21)),
}

EMAIL_FOOTER = "<p>Ваш магазин «Лично».</p>"

# kind: name, active, priority, delay hours, days, follow-up every days, follow-ups, channels,
# offer (None: the texts below), sms, e-mail subject, e-mail body
SCENARIOS: dict[str, dict[str, Any]] = {
    TriggerKind.ABANDONED_CART: {
        "name": "Брошенная корзина",
        "is_active": True,
        "priority": 80,
        "delay_hours": 2,
        "days": 3,
        "followup_days": 1,
        "max_followups": 1,
        "channels": ["sms", "email"],
        "sms_text": "{{ client.first_name }}, товары ждут вас в корзине. Оформить заказ: [link]",
        "email_subject": "{{ client.first_name }}, вы кое-что забыли в корзине",
        "email_body": "<p>{{ client.first_name }}, здравствуйте!</p>"
        "<p>Товары в вашей корзине всё ещё ждут вас: [link]</p>" + EMAIL_FOOTER,
        "landing_url": f"{LANDING}/cart",
    },
    TriggerKind.BROWSE_ABANDONMENT: {
        "name": "Смотрели, но не купили",
        "priority": 40,
        "delay_hours": 24,
        "days": 3,
        "channels": ["email"],
        "email_subject": "{{ client.first_name }}, присмотрели что-то?",
        "email_body": "<p>{{ client.first_name }}, вы недавно смотрели товары в нашем магазине."
        " Вернуться к ним: [link]</p>" + EMAIL_FOOTER,
        "landing_url": LANDING,
    },
    TriggerKind.CROSS_SELL: {
        "name": "После покупки: дополните",
        "priority": 50,
        "delay_hours": 0,
        "days": 14,
        "channels": ["sms", "email"],
        "offer": CROSS_SELL_OFFER,
    },
    TriggerKind.REPLENISHMENT: {
        "name": "Пора пополнить запас",
        "priority": 60,
        "delay_hours": 0,
        "days": 3,
        "channels": ["sms", "call", "email"],
        "offer": REPLENISH_OFFER,
    },
    TriggerKind.BIRTHDAY: {
        "name": "День рождения",
        "is_active": True,
        "priority": 70,
        "delay_hours": 0,
        "days": 3,
        "channels": ["sms", "email"],
        "sms_text": "{{ client.first_name }}, с наступающим днём рождения! Загляните в «Лично»"
        " — для вас подарок на кассе.",
        "email_subject": "{{ client.first_name }}, с наступающим днём рождения!",
        "email_body": "<p>{{ client.name }}, поздравляем с наступающим днём рождения!</p>"
        "<p>Загляните в любой магазин «Лично» — для вас подарок на кассе.</p>" + EMAIL_FOOTER,
    },
    TriggerKind.WIN_BACK: {
        "name": "Давно не заходили",
        "priority": 30,
        "delay_hours": 0,
        "days": 90,
        "channels": ["sms", "email"],
        "sms_text": "{{ client.first_name }}, давно не виделись! Загляните в «Лично»: [link]",
        "email_subject": "{{ client.first_name }}, мы скучаем",
        "email_body": "<p>{{ client.first_name }}, давно не виделись! Посмотрите, что нового:"
        " [link]</p>" + EMAIL_FOOTER,
        "landing_url": LANDING,
    },
    TriggerKind.PRICE_DROP: {
        "name": "Подешевело в корзине",
        "priority": 75,
        "delay_hours": 1,
        "days": 7,
        "channels": ["sms", "email"],
        "sms_text": "{{ client.first_name }}, {{ product.name }} из вашей корзины подешевел:"
        " [link]",
        "email_subject": "{{ client.first_name }}, товар из корзины подешевел",
        "email_body": "<p>{{ client.first_name }}, {{ product.name }} из вашей корзины теперь "
        "дешевле: [link]</p>" + EMAIL_FOOTER,
        "landing_url": f"{LANDING}/cart",
    },
}


class DemoOffersMissing(Exception):
    """``offers_demo`` has not been run: there is nothing to send."""


@dataclass(frozen=True)
class DemoMessaging:
    policy: ContactPolicy
    offer_campaign: Campaign
    plain_campaign: Campaign
    autodial_campaign: Campaign
    scenarios: list[TriggerScenario]


def _policy() -> ContactPolicy:
    policy, _created = ContactPolicy.objects.get_or_create(
        name=POLICY_NAME,
        defaults={"total_limit": 3, "total_window_days": 7, "min_gap_hours": 24},
    )
    for channel, (limit, days, weekday, weekend) in CHANNEL_RULES.items():
        ChannelRule.objects.get_or_create(
            policy=policy,
            channel=channel,
            defaults={
                "limit": limit,
                "window_days": days,
                "weekday_start": dt.time(weekday[0]),
                "weekday_end": dt.time(weekday[1]),
                "weekend_start": dt.time(weekend[0]),
                "weekend_end": dt.time(weekend[1]),
            },
        )
    if not ContactPolicy.objects.filter(is_active=True).exists():
        contact_policy_activate(policy=policy)
    return policy


@transaction.atomic
def messaging_demo_setup() -> DemoMessaging:
    offers = {o.name: o for o in Offer.objects.filter(name__in=[REPLENISH_OFFER, CROSS_SELL_OFFER])}
    segment = Segment.objects.filter(name=CAT_SEGMENT).first()
    if REPLENISH_OFFER not in offers or segment is None:
        raise DemoOffersMissing("Run offers_demo first: the demo offers are missing.")
    policy = _policy()
    weekly, _created = CrontabSchedule.objects.get_or_create(
        minute="0",
        hour="11",
        day_of_week="2",
        day_of_month="*",
        month_of_year="*",
        timezone="Europe/Moscow",
    )
    offer_campaign, _created = Campaign.objects.get_or_create(
        name=OFFER_CAMPAIGN,
        defaults={
            "offer": offers[REPLENISH_OFFER],
            "channels": ["sms", "email"],
            "schedule_kind": ScheduleKind.RECURRING,
            "crontab": weekly,
            "throttle_per_second": 20,
            "landing_url": f"{LANDING}/cat-food",
        },
    )
    plain_campaign, _created = Campaign.objects.get_or_create(
        name=PLAIN_CAMPAIGN,
        defaults={
            "segment": segment,
            "channels": ["email", "sms"],
            "schedule_kind": ScheduleKind.NOW,
            "sms_text": "{{ client.first_name }}, в «Лично» новые корма и игрушки для кошек:"
            " [link]",
            "email_subject": "{{ client.first_name }}, новинки для вашей кошки",
            "email_body": "<p>{{ client.first_name }}, здравствуйте!</p>"
            "<p>В «Лично» появились новые корма и игрушки для кошек: [link]</p>" + EMAIL_FOOTER,
            "landing_url": f"{LANDING}/cats",
            "throttle_per_second": 20,
        },
    )
    # The replenishment offer read out by the autodialer ("press 1 / press 2"), sent on demand.
    autodial_campaign, _created = Campaign.objects.get_or_create(
        name=AUTODIAL_CAMPAIGN,
        defaults={
            "offer": offers[REPLENISH_OFFER],
            "channels": ["call"],
            "schedule_kind": ScheduleKind.NOW,
            "throttle_per_second": 5,
        },
    )
    scenarios = []
    for kind, spec in SCENARIOS.items():
        fields = {k: v for k, v in spec.items() if k not in ("name", "offer")}
        fields["kind"] = kind
        if spec.get("offer"):
            fields["offer"] = offers.get(spec["offer"])
            if fields["offer"] is None:
                continue  # the cross-sell offer was removed: leave that scenario out
        scenario, _created = TriggerScenario.objects.get_or_create(
            name=spec["name"], defaults=fields
        )
        scenarios.append(scenario)
    return DemoMessaging(policy, offer_campaign, plain_campaign, autodial_campaign, scenarios)
