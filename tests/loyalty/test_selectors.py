"""loyalty.selectors.account_summary."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from loyalty.models import EntryKind, LoyaltyAccount, PointsEntry
from loyalty.selectors import AccountSummary, account_summary
from loyalty.services import points_redeem

pytestmark = pytest.mark.django_db


def test_summary_shows_expiring_points_fifo_and_the_next_tier(
    tiers, make_client, make_purchase, now, django_assert_max_num_queries
):
    # given a Silver client: 100 points due in 10 days, 50 in 60 days, 30 redeemed;
    # 30 000 spent within Gold's 180 days and 5 000 more 200 days ago
    client = make_client()
    account = LoyaltyAccount.objects.create(client=client, tier=tiers["silver"], balance=150)
    soon = make_purchase(client, "30000", days_ago=10)
    later = make_purchase(client, "5000", days_ago=200)
    PointsEntry.objects.create(
        account=account,
        kind=EntryKind.EARN,
        points=100,
        purchase=soon,
        expires_at=now + timedelta(days=10),
    )
    PointsEntry.objects.create(
        account=account,
        kind=EntryKind.EARN,
        points=50,
        purchase=later,
        expires_at=now + timedelta(days=60),
    )
    points_redeem(account_id=account.id, points=30, reason="order")

    # when
    with django_assert_max_num_queries(2):
        summary = account_summary(client_id=client.id, at=now)

    # then
    assert summary == AccountSummary(
        account_id=account.id,
        tier="Silver",
        balance=120,
        expiring_points=70,
        expiring_within_days=30,
        next_tier="Gold",
        spend_to_next_tier=Decimal("20000"),
    )


def test_summary_at_the_top_tier_has_no_next_tier(tiers, make_client):
    client = make_client()
    account = LoyaltyAccount.objects.create(client=client, tier=tiers["gold"], balance=0)

    assert account_summary(client_id=client.id) == AccountSummary(
        account_id=account.id,
        tier="Gold",
        balance=0,
        expiring_points=0,
        expiring_within_days=30,
        next_tier=None,
        spend_to_next_tier=None,
    )


def test_summary_of_a_client_without_account_is_none(tiers, make_client):
    assert account_summary(client_id=make_client().id) is None
