"""A small crafted world with known answers for every field of the segment catalog.

NOW is 27 February 2026, 12:00 Moscow (2026 is not a leap year).

- anna: f, 1990-05-15 (35), SPb / Центральный, married, higher, "Инженер-программист", web,
  attributes vip/score 7/club gold, yoga, a child born 2018, a cat; SMS marketing granted; Gold,
  500 points, rolling 60000; bought a laptop 100 days ago and Whiskas cat food 10 days ago;
  added to cart 2 hours ago (no purchase since).
- boris: m, 1985-03-01 (40), Москва, Asia/Yekaterinburg, single, secondary, "водитель", store,
  score 3, fishing, a dog; SMS withdrawn, e-mail granted; Silver, 0 points; own-label cat food
  35 and 30 days ago, a dog toy 1 day ago; cart and a laptop view 3 days ago.
- vera: f, 2000-02-29 (25), SPb / Адмиралтейский, app; no pets, children or purchases; viewed a
  laptop 20 days ago.
- gleb: no birth date, no city, import; bought a laptop 400 days ago.
- zed: anonymized copy of anna's profile, bought cat food 10 days ago: never in a segment.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from crm.models import (
    Brand,
    Category,
    Child,
    Client,
    Consent,
    Event,
    Interest,
    Pet,
    Product,
    Purchase,
    PurchaseItem,
)
from crm.services import ConsentChange, category_save, consent_record_many
from loyalty.models import LoyaltyAccount, Tier

MSK = ZoneInfo("Europe/Moscow")
NOW = dt.datetime(2026, 2, 27, 12, 0, tzinfo=MSK)


def ago(**kwargs: float) -> dt.datetime:
    return NOW - dt.timedelta(**kwargs)


class World(dict):
    # Set as plain attributes by the ``world`` fixture; everything else is read through the dict.
    whiskas_food: Product
    own_food: Product
    laptop: Product
    dog_toy: Product

    def __getattr__(self, name: str) -> Any:
        return self[name]


def _category(name: str, parent: Category | None = None) -> Category:
    return category_save(
        category=Category(name=name, slug=name.lower().replace(" ", "-"), parent=parent)
    )


def _buy(client: Client, when: dt.datetime, *lines: tuple[Product, str]) -> Purchase:
    total = sum((Decimal(price) for _p, price in lines), Decimal(0))
    purchase = Purchase.objects.create(client=client, purchased_at=when, total=total)
    for product, price in lines:
        PurchaseItem.objects.create(
            purchase=purchase,
            product=product,
            unit_price=Decimal(price),
            client=client,
            purchased_at=when,
        )
    return purchase


@pytest.fixture(autouse=True)
def english() -> Any:
    """Messages are asserted in English; tests that need Russian switch explicitly."""
    from django.utils import translation

    with translation.override("en"):
        yield


@pytest.fixture
def world(db: Any) -> World:
    w = World()
    pets = _category("Pets")
    cat_food = _category("Cat food", pets)
    dog_toys = _category("Dog toys", pets)
    electronics = _category("Electronics")
    laptops = _category("Laptops", electronics)
    whiskas = Brand.objects.create(name="Whiskas")
    own = Brand.objects.create(name="Our Own", is_private_label=True)
    acme = Brand.objects.create(name="Acme")
    w.update(
        pets=pets, cat_food=cat_food, dog_toys=dog_toys, electronics=electronics, laptops=laptops
    )
    w.update(whiskas=whiskas, own=own, acme=acme)
    w.whiskas_food = Product.objects.create(
        sku="WF", name="Whiskas food", category=cat_food, brand=whiskas, price=Decimal("500")
    )
    w.own_food = Product.objects.create(
        sku="OF", name="Own cat food", category=cat_food, brand=own, price=Decimal("300")
    )
    w.laptop = Product.objects.create(
        sku="LP", name="Laptop", category=laptops, brand=acme, price=Decimal("50000")
    )
    w.dog_toy = Product.objects.create(
        sku="DT", name="Dog toy", category=dog_toys, brand=None, price=Decimal("200")
    )
    yoga = Interest.objects.create(name="yoga")
    fishing = Interest.objects.create(name="fishing")
    w.update(yoga=yoga, fishing=fishing)
    gold = Tier.objects.create(name="Gold", rank=3, earn_rate=5, qualifying_spend=50000)
    silver = Tier.objects.create(name="Silver", rank=2, earn_rate=3, qualifying_spend=10000)
    w.update(gold=gold, silver=silver)

    def client(name: str, **fields: Any) -> Client:
        fields.setdefault("time_zone", "Europe/Moscow")
        c = Client.objects.create(external_id=name, last_name=name.title(), **fields)
        w[name] = c
        return c

    anna = client(
        "anna",
        gender="f",
        birth_date=dt.date(1990, 5, 15),
        city="Санкт-Петербург",
        region="Центральный",
        family_status="married",
        education="higher",
        occupation="Инженер-программист",
        source="web",
        preferred_channel="sms",
        attributes={"vip": True, "score": 7, "club": "gold"},
        phone="+79161112233",
        email="anna@example.ru",
    )
    boris = client(
        "boris",
        gender="m",
        birth_date=dt.date(1985, 3, 1),
        city="Москва",
        family_status="single",
        education="secondary",
        occupation="водитель",
        source="store",
        attributes={"score": 3},
        time_zone="Asia/Yekaterinburg",
        phone="+79161112244",
    )
    vera = client(
        "vera",
        gender="f",
        birth_date=dt.date(2000, 2, 29),
        city="Санкт-Петербург",
        region="Адмиралтейский",
        source="app",
        email="vera@example.ru",
    )
    gleb = client("gleb", source="import")
    zed = client(
        "zed",
        gender="f",
        birth_date=dt.date(1990, 5, 15),
        city="Санкт-Петербург",
        is_anonymized=True,
    )
    Client.objects.filter(pk=anna.pk).update(created_at=ago(days=400))
    Client.objects.filter(pk=boris.pk).update(created_at=ago(days=40))
    Client.objects.filter(pk=vera.pk).update(created_at=dt.datetime(2025, 1, 10, 9, tzinfo=MSK))
    Client.objects.filter(pk=gleb.pk).update(created_at=ago(days=1000))

    anna.interests.add(yoga)
    boris.interests.add(fishing)
    Child.objects.create(client=anna, birth_year=2018)
    Pet.objects.create(client=anna, kind="cat")
    Pet.objects.create(client=boris, kind="dog")

    consent_record_many(
        changes=[
            ConsentChange(anna.pk, "sms", "marketing", "granted", "store", "v1", ago(days=50)),
            ConsentChange(boris.pk, "sms", "marketing", "granted", "store", "v1", ago(days=50)),
            ConsentChange(boris.pk, "sms", "marketing", "withdrawn", "api", "v1", ago(days=5)),
            ConsentChange(boris.pk, "email", "marketing", "granted", "web_form", "v1", ago(days=5)),
        ]
    )
    assert Consent.objects.filter(is_granted=True).count() == 2

    LoyaltyAccount.objects.create(client=anna, tier=gold, balance=500, rolling_spend=60000)
    LoyaltyAccount.objects.create(client=boris, tier=silver, balance=0, rolling_spend=900)

    _buy(anna, ago(days=100), (w.laptop, "50000"))
    _buy(anna, ago(days=10), (w.whiskas_food, "1500"))
    _buy(boris, ago(days=35), (w.own_food, "300"))
    _buy(boris, ago(days=30), (w.own_food, "600"))
    _buy(boris, ago(days=1), (w.dog_toy, "200"))
    _buy(gleb, ago(days=400), (w.laptop, "40000"))
    _buy(zed, ago(days=10), (w.whiskas_food, "1500"))

    Event.objects.create(
        client=anna, type="cart_add", occurred_at=ago(hours=2), product=w.whiskas_food
    )
    Event.objects.create(client=boris, type="cart_add", occurred_at=ago(days=3), product=w.dog_toy)
    Event.objects.create(
        client=boris, type="product_view", occurred_at=ago(days=3), product=w.laptop
    )
    Event.objects.create(
        client=vera, type="product_view", occurred_at=ago(days=20), product=w.laptop
    )
    return w
