"""Offer validation: the margin guard, the window, benefits, templates."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from offers.models import Offer
from offers.pricing import benefit_text, keeps_margin, price_with_benefit
from offers.services import offer_save, offer_validate

pytestmark = pytest.mark.django_db


def _offer(**kwargs):
    now = timezone.now()
    values = {
        "name": "Тест",
        "status": "active",
        "channels": ["sms"],
        "starts_at": now,
        "ends_at": now + dt.timedelta(days=7),
        "strategy": "fixed",
        "benefit_kind": "percent",
        "benefit_value": Decimal("10"),
    }
    values.update(kwargs)
    return Offer(**values)


def test_margin_guard_arithmetic():
    # price 800, cost 500: 10% off -> 720, margin 220/720 = 30.6%
    assert keeps_margin(
        price=Decimal(800),
        cost=Decimal(500),
        kind="percent",
        value=Decimal(10),
        min_margin=Decimal(30),
    )
    assert not keeps_margin(
        price=Decimal(800),
        cost=Decimal(500),
        kind="percent",
        value=Decimal(10),
        min_margin=Decimal(31),
    )
    # a fixed 300 off 800 -> 500 = cost: no margin left
    assert not keeps_margin(
        price=Decimal(800),
        cost=Decimal(500),
        kind="amount",
        value=Decimal(300),
        min_margin=Decimal(0.01),
    )
    # points and unknown costs pass
    assert keeps_margin(
        price=Decimal(800),
        cost=Decimal(790),
        kind="points",
        value=Decimal(500),
        min_margin=Decimal(10),
    )
    assert keeps_margin(
        price=Decimal(800), cost=None, kind="percent", value=Decimal(90), min_margin=Decimal(10)
    )
    assert price_with_benefit(Decimal("999.99"), "percent", Decimal("15")) == Decimal("849.99")
    assert benefit_text("percent", Decimal("10.00")) == "скидка 10%"
    assert benefit_text("amount", Decimal("500")) == "скидка 500 ₽"
    assert benefit_text("gift", Decimal("0"), "подарок — миска") == "подарок — миска"


def test_offer_refused_when_its_discount_breaks_the_margin(shop, settings):
    settings.OFFERS_MIN_MARGIN_PERCENT = "20"
    # cat food 800/500: 25% off -> 600, margin 16.7% < 20%
    offer = _offer(benefit_value=Decimal("25"))

    errors = offer_validate(offer=offer, fixed_products=[shop.whiskas])

    assert errors == {
        "benefit_value": [
            "The discount would push these products below the minimum margin of 20% over "
            f"cost: {shop.whiskas.name}."
        ]
    }
    # the offer's own minimum overrides the setting; a category scope is checked too
    assert (
        offer_validate(
            offer=_offer(benefit_value=Decimal("25"), min_margin_percent=15),
            fixed_products=[shop.whiskas],
        )
        == {}
    )
    by_category = _offer(benefit_value=Decimal("25"), fixed_category=shop.pets)
    assert shop.whiskas.name in offer_validate(offer=by_category)["benefit_value"][0]
    with pytest.raises(ValidationError):
        offer_save(offer=offer, fixed_products=[shop.whiskas])
    assert not Offer.objects.exists()


def test_other_offer_errors(shop):
    offer = _offer(
        ends_at=timezone.now() - dt.timedelta(days=1),
        channels=["fax"],
        benefit_value=Decimal("120"),
        reason_template="{{ fact.nope }}",
    )

    errors = offer_validate(offer=offer, fixed_products=[])

    assert set(errors) == {"ends_at", "channels", "benefit_value", "strategy", "reason_template"}


def test_offer_save_stores_products(shop):
    offer = offer_save(offer=_offer(), fixed_products=[shop.anker])
    assert list(offer.fixed_products.all()) == [shop.anker]
