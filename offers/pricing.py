"""Benefit arithmetic and the margin guard, shared by the admin validation and the engine.

Settings (defaults apply when the project does not set them):
``OFFERS_MIN_MARGIN_PERCENT`` (10): the least margin over cost a discounted price must keep,
``OFFERS_SMS_PART_PRICE`` (2.50 roubles): the price of one SMS part, for campaign estimates.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings

from offers.models import BenefitKind

CENT = Decimal("0.01")


def default_min_margin_percent() -> Decimal:
    return Decimal(str(getattr(settings, "OFFERS_MIN_MARGIN_PERCENT", "10")))


def sms_part_price() -> Decimal:
    return Decimal(str(getattr(settings, "OFFERS_SMS_PART_PRICE", "2.50")))


def min_margin_percent(offer: Any) -> Decimal:
    value = offer.min_margin_percent
    return default_min_margin_percent() if value is None else Decimal(value)


def price_with_benefit(price: Decimal, kind: str, value: Decimal) -> Decimal:
    if kind == BenefitKind.PERCENT:
        reduced = price * (Decimal(100) - Decimal(value)) / Decimal(100)
    elif kind == BenefitKind.AMOUNT:
        reduced = price - Decimal(value)
    else:
        reduced = price
    return max(Decimal(0), reduced).quantize(CENT, rounding=ROUND_HALF_UP)


def keeps_margin(
    *, price: Decimal, cost: Decimal | None, kind: str, value: Decimal, min_margin: Decimal
) -> bool:
    """Whether the discounted price still earns ``min_margin`` percent of itself over cost.

    Products without a known cost pass; benefits that are not discounts always pass.
    """
    if cost is None or kind not in (BenefitKind.PERCENT, BenefitKind.AMOUNT):
        return True
    reduced = price_with_benefit(price, kind, value)
    if reduced <= 0:
        return False
    return (reduced - cost) * 100 >= min_margin * reduced


def benefit_cost(price: Decimal, kind: str, value: Decimal) -> Decimal:
    """What the benefit costs the business on one product, in roubles (a point is a rouble)."""
    if kind in (BenefitKind.PERCENT, BenefitKind.AMOUNT):
        return price - price_with_benefit(price, kind, value)
    if kind == BenefitKind.POINTS:
        return Decimal(value)
    return Decimal(0)


def benefit_text(kind: str, value: Decimal, wording: str = "") -> str:
    if wording:
        return wording
    number = Decimal(value).normalize()
    shown = f"{number:f}".replace(".", ",")
    texts: dict[str, str] = {
        BenefitKind.PERCENT: f"скидка {shown}%",
        BenefitKind.AMOUNT: f"скидка {shown} ₽",
        BenefitKind.POINTS: f"{shown} бонусных баллов",
        BenefitKind.GIFT: "подарок",
        BenefitKind.FREE_DELIVERY: "бесплатная доставка",
    }
    return texts.get(kind, "")
