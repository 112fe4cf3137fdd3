"""A small catalog with known answers for the offer strategies.

NOW is 27 February 2026, 12:00 Moscow.

Categories: Зоотовары / Корм для кошек; Электроника / Смартфоны, Внешние аккумуляторы;
Аптека / Интимное здоровье (sensitive). Brands: Whiskas, Anker, Samsung, «Лично Выбор»
(private label), Durex.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from crm.models import Brand, Category, Client, Product
from tests.factories import (
    BrandFactory,
    CategoryFactory,
    ClientFactory,
    ProductFactory,
    PurchaseFactory,
    PurchaseItemFactory,
)

MSK = ZoneInfo("Europe/Moscow")
NOW = dt.datetime(2026, 2, 27, 12, 0, tzinfo=MSK)


def ago(days: float) -> dt.datetime:
    return NOW - dt.timedelta(days=days)


class Catalog(dict):
    def __getattr__(self, name: str) -> Any:
        return self[name]


@pytest.fixture
def shop(db: None) -> Catalog:
    c = Catalog()
    c["pets"] = CategoryFactory(name="Зоотовары", slug="pets")
    c["cat_food"] = CategoryFactory(name="Корм для кошек", slug="cat-food", parent=c["pets"])
    c["electronics"] = CategoryFactory(name="Электроника", slug="electronics")
    c["phones"] = CategoryFactory(name="Смартфоны", slug="phones", parent=c["electronics"])
    c["power_banks"] = CategoryFactory(
        name="Внешние аккумуляторы", slug="power-banks", parent=c["electronics"]
    )
    c["pharmacy"] = CategoryFactory(name="Аптека", slug="pharmacy")
    c["intimate"] = CategoryFactory(
        name="Интимное здоровье", slug="intimate", parent=c["pharmacy"], sensitive=True
    )
    whiskas = BrandFactory(name="Whiskas")
    own = BrandFactory(name="Лично Выбор", is_private_label=True)
    anker = BrandFactory(name="Anker")
    samsung = BrandFactory(name="Samsung")
    durex = BrandFactory(name="Durex")
    c["whiskas"] = ProductFactory(
        name="Whiskas сухой корм с курицей, 1,5 кг",
        category=c["cat_food"],
        brand=whiskas,
        price=Decimal("800"),
        cost=Decimal("500"),
    )
    c["whiskas_wet"] = ProductFactory(
        name="Whiskas паучи, 85 г",
        category=c["cat_food"],
        brand=whiskas,
        price=Decimal("50"),
        cost=Decimal("30"),
    )
    c["own_cat_food"] = ProductFactory(
        name="Лично Выбор сухой корм с курицей, 1,5 кг",
        category=c["cat_food"],
        brand=own,
        price=Decimal("600"),
        cost=Decimal("300"),
    )
    c["phone"] = ProductFactory(
        name="Samsung Galaxy A55",
        category=c["phones"],
        brand=samsung,
        price=Decimal("38990"),
        cost=Decimal("30000"),
    )
    c["anker"] = ProductFactory(
        name="Anker 20000 мА·ч",
        category=c["power_banks"],
        brand=anker,
        price=Decimal("3990"),
        cost=Decimal("2500"),
    )
    c["anker_small"] = ProductFactory(
        name="Anker 5000 мА·ч",
        category=c["power_banks"],
        brand=anker,
        price=Decimal("1990"),
        cost=Decimal("1200"),
        in_stock=False,
    )
    c["condoms"] = ProductFactory(
        name="Durex Classic, 12 шт.",
        category=c["intimate"],
        brand=durex,
        price=Decimal("900"),
        cost=Decimal("500"),
    )
    return c


Buy = Callable[..., None]


@pytest.fixture
def buy(db: None) -> Buy:
    """``buy(client, product, days_ago, qty=1)``: one purchase with one item."""

    def make(client: Client, product: Product, days_ago: float, quantity: int = 1) -> None:
        purchase = PurchaseFactory(
            client=client, purchased_at=ago(days_ago), total=product.price * quantity
        )
        PurchaseItemFactory(
            purchase=purchase, product=product, unit_price=product.price, quantity=quantity
        )

    return make


@pytest.fixture
def client_factory(db: None) -> Callable[..., Client]:
    return ClientFactory


__all__ = ["NOW", "ago", "Brand", "Category"]


@pytest.fixture(autouse=True)
def _english() -> Any:
    """Messages are asserted in English (the UI default is Russian)."""
    from django.utils import translation

    with translation.override("en"):
        yield
