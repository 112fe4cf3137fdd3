"""Loyalty reads: what the client card and the API show about a client's points and tier."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import DecimalField, F, OuterRef, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from crm.models import Purchase
from loyalty.models import EntryKind, LoyaltyAccount, PointsEntry, Tier

EXPIRING_WITHIN_DAYS = 30


@dataclass(frozen=True)
class AccountSummary:
    account_id: int
    tier: str | None
    balance: int
    expiring_points: int
    expiring_within_days: int
    next_tier: str | None
    spend_to_next_tier: Decimal | None


def _spend(*, client_id: int, since: datetime, until: datetime) -> Coalesce:
    spend = (
        Purchase.objects.filter(client_id=client_id)
        .filter(purchased_at__gt=since, purchased_at__lte=until)
        .values("client_id")
        .annotate(s=Sum("total"))
        .values("s")
    )
    money = DecimalField(max_digits=14, decimal_places=2)
    return Coalesce(Subquery(spend, output_field=money), Value(Decimal("0")), output_field=money)


def account_summary(*, client_id: int, at: datetime | None = None) -> AccountSummary | None:
    """Tier, balance, points expiring soon and what the next tier needs; ``None`` without account.

    Two queries: the tiers, then the account with its sums. Expiring points follow the same FIFO
    rule as ``points_expire``: spent points are taken from the earliest-expiring ones.
    """
    at = at or timezone.now()
    tiers = list(Tier.objects.order_by("rank"))
    horizon = at + timedelta(days=EXPIRING_WITHIN_DAYS)
    earned_soon = (
        PointsEntry.objects.filter(
            account_id=OuterRef("pk"), kind=EntryKind.EARN, expires_at__lte=horizon
        )
        .values("account_id")
        .annotate(s=Sum("points"))
        .values("s")
    )
    spent = (
        PointsEntry.objects.filter(account_id=OuterRef("pk"), points__lt=0)
        .values("account_id")
        .annotate(s=Sum("points"))
        .values("s")
    )
    windows = sorted({tier.window_days for tier in tiers})
    spend_annotations = {
        f"spend_{days}": _spend(client_id=client_id, since=at - timedelta(days=days), until=at)
        for days in windows
    }
    row = (
        LoyaltyAccount.objects.filter(client_id=client_id)
        .annotate(
            earned_soon=Coalesce(Subquery(earned_soon), 0),
            spent=Coalesce(Subquery(spent), 0),
            **spend_annotations,
        )
        .annotate(due_soon=F("earned_soon") + F("spent"))
        .values("id", "tier_id", "balance", "due_soon", *spend_annotations)
        .first()
    )
    if row is None:
        return None
    current = next((tier for tier in tiers if tier.id == row["tier_id"]), None)
    if current is None:
        higher = tiers[:1] if row["tier_id"] is None else []
    else:
        higher = [tier for tier in tiers if tier.rank > current.rank]
    next_tier = higher[0] if higher else None
    spend_needed = None
    if next_tier is not None:
        spend = row[f"spend_{next_tier.window_days}"]
        spend_needed = max(Decimal("0"), next_tier.qualifying_spend - spend)
    return AccountSummary(
        account_id=row["id"],
        tier=current.name if current else None,
        balance=row["balance"],
        expiring_points=max(0, min(row["due_soon"], row["balance"])),
        expiring_within_days=EXPIRING_WITHIN_DAYS,
        next_tier=next_tier.name if next_tier else None,
        spend_to_next_tier=spend_needed,
    )
