"""loyalty.services: accrual, redemption, adjustment, expiry, tier recomputation."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Sum

from crm.models import AuditAction, AuditLog, Purchase
from loyalty.models import EntryKind, LoyaltyAccount, PointsEntry
from loyalty.services import (
    AccountNotFound,
    InsufficientPoints,
    InvalidPoints,
    LoyaltyError,
    account_ensure_many,
    points_accrue_for_purchases,
    points_adjust,
    points_expire,
    points_redeem,
    tiers_recompute,
)

pytestmark = pytest.mark.django_db


def ledger(account: LoyaltyAccount) -> list[tuple[str, int]]:
    return list(account.entries.order_by("id").values_list("kind", "points"))


def account_with(client, tier, balance: int = 0) -> LoyaltyAccount:
    """An account holding ``balance`` points, every one of them explained by the ledger."""
    account = LoyaltyAccount.objects.create(client=client, tier=tier)
    if balance:
        points_adjust(account_id=account.id, points=balance, reason="opening balance")
        account.refresh_from_db()
    return account


# Accounts ---------------------------------------------------------------------------------------


def test_account_ensure_many_creates_missing_accounts_at_base_tier(tiers, make_client):
    # given one client with a Gold account and two without
    gold_client, a, b = make_client(), make_client(), make_client()
    LoyaltyAccount.objects.create(client=gold_client, tier=tiers["gold"], balance=0)

    # when
    account_ensure_many(client_ids=[gold_client.id, a.id, b.id, a.id])

    # then
    assert sorted(
        LoyaltyAccount.objects.values_list("client_id", "tier__name", "balance")
    ) == sorted([(gold_client.id, "Gold", 0), (a.id, "Base", 0), (b.id, "Base", 0)])


# Accrual ----------------------------------------------------------------------------------------


def test_accrual_earns_floor_of_total_times_tier_rate(tiers, make_client, make_purchase):
    # given a Base, a Silver and a Gold client, and a purchase too small to earn
    base, silver, gold = make_client(), make_client(), make_client()
    LoyaltyAccount.objects.create(client=silver, tier=tiers["silver"])
    LoyaltyAccount.objects.create(client=gold, tier=tiers["gold"])
    p_base = make_purchase(base, "1999.99", days_ago=2)
    p_silver = make_purchase(silver, "1234.50")
    p_gold = make_purchase(gold, "999.00")
    make_purchase(base, "99.99")

    # when
    created = points_accrue_for_purchases()

    # then
    assert created == 3
    lifetime = timedelta(days=settings.LOYALTY_POINTS_LIFETIME_DAYS)
    assert sorted(
        PointsEntry.objects.values_list("purchase_id", "kind", "points", "expires_at")
    ) == sorted(
        [
            (p_base.id, "earn", 19, p_base.purchased_at + lifetime),
            (p_silver.id, "earn", 37, p_silver.purchased_at + lifetime),
            (p_gold.id, "earn", 49, p_gold.purchased_at + lifetime),
        ]
    )
    assert dict(LoyaltyAccount.objects.values_list("client_id", "balance")) == {
        base.id: 19,
        silver.id: 37,
        gold.id: 49,
    }


def test_accrual_is_idempotent(tiers, make_client, make_purchase):
    # given purchases already accrued
    client = make_client()
    make_purchase(client, "500")
    make_purchase(client, "700")
    assert points_accrue_for_purchases() == 2

    # when it runs again, for all pending and for explicit ids
    again = points_accrue_for_purchases()
    explicit = points_accrue_for_purchases(
        purchase_ids=Purchase.objects.values_list("id", flat=True)
    )

    # then nothing more is written and the balance is unchanged
    assert (again, explicit) == (0, 0)
    account = LoyaltyAccount.objects.get()
    assert (account.balance, ledger(account)) == (12, [("earn", 5), ("earn", 7)])


def test_accrual_only_for_given_purchases(tiers, make_client, make_purchase):
    # given two purchases
    client = make_client()
    first = make_purchase(client, "300")
    make_purchase(client, "400")

    # when only the first is accrued
    created = points_accrue_for_purchases(purchase_ids=[first.id])

    # then
    assert created == 1
    assert list(PointsEntry.objects.values_list("purchase_id", "points")) == [(first.id, 3)]
    assert LoyaltyAccount.objects.get().balance == 3


def test_accrual_opens_accounts_for_clients_without_one(tiers, make_client, make_purchase):
    # given a client with no account
    client = make_client()
    make_purchase(client, "2500")

    # when
    points_accrue_for_purchases()

    # then
    account = LoyaltyAccount.objects.get()
    assert (account.client_id, account.tier_id, account.balance) == (
        client.id,
        tiers["base"].id,
        25,
    )


def test_accrual_in_small_batches_covers_everything(tiers, make_client, make_purchase):
    # given 7 purchases of 3 clients
    clients = [make_client() for _ in range(3)]
    for i in range(7):
        make_purchase(clients[i % 3], "100")

    # when accrued 2 at a time
    created = points_accrue_for_purchases(batch_size=2)

    # then
    assert created == 7
    assert sorted(LoyaltyAccount.objects.values_list("balance", flat=True)) == [2, 2, 3]


def test_accrual_skips_purchases_whose_points_would_be_born_expired(
    tiers, make_client, make_purchase
):
    # given a purchase older than the points lifetime
    client = make_client()
    old = make_purchase(client, "1000", days_ago=settings.LOYALTY_POINTS_LIFETIME_DAYS + 1)

    # when all pending are accrued, then it is left alone; named explicitly, it earns
    assert points_accrue_for_purchases() == 0
    assert points_accrue_for_purchases(purchase_ids=[old.id]) == 1


@pytest.mark.parametrize("count", [1, 50])
def test_accrual_query_count_does_not_grow_with_purchases(
    count, tiers, make_client, make_purchase, django_assert_max_num_queries
):
    # given `count` purchases of clients without accounts
    for _ in range(count):
        make_purchase(make_client(), "1000")

    # when / then the same bound holds for 1 and for 50
    with django_assert_max_num_queries(10):
        assert points_accrue_for_purchases() == count
    assert LoyaltyAccount.objects.aggregate(s=Sum("balance"))["s"] == 10 * count


# Redemption -------------------------------------------------------------------------------------


def test_redeem_decrements_and_writes_ledger_and_audit(tiers, make_client, admin_user):
    # given
    client = make_client()
    account = account_with(client, tiers["base"], 100)

    # when
    entry = points_redeem(client_id=client.id, points=70, reason="order 42", actor=admin_user)

    # then
    account.refresh_from_db()
    assert account.balance == 30
    assert (entry.kind, entry.points, entry.reason) == ("redeem", -70, "order 42")
    assert ledger(account) == [("adjust", 100), ("redeem", -70)]
    audit = AuditLog.objects.get(action=AuditAction.POINTS_REDEEMED)
    assert (audit.client_id, audit.actor_id, audit.changes) == (
        client.id,
        admin_user.id,
        {"points": 70, "balance_after": 30, "reason": "order 42", "entry_id": entry.id},
    )


def test_redeem_more_than_balance_is_refused_and_changes_nothing(tiers, make_client):
    # given
    account = account_with(make_client(), tiers["base"], 50)
    audit_before = AuditLog.objects.count()

    # when / then
    with pytest.raises(InsufficientPoints) as raised:
        points_redeem(account_id=account.id, points=51, reason="too much")

    assert isinstance(raised.value, LoyaltyError)
    assert "50" in str(raised.value) and "51" in str(raised.value)
    account.refresh_from_db()
    assert (account.balance, ledger(account)) == (50, [("adjust", 50)])
    assert AuditLog.objects.count() == audit_before


@pytest.mark.parametrize("points", [0, -5])
def test_redeem_refuses_non_positive_points(points, tiers, make_client):
    account = account_with(make_client(), tiers["base"], 10)
    with pytest.raises(InvalidPoints):
        points_redeem(account_id=account.id, points=points, reason="x")
    assert ledger(account) == [("adjust", 10)]


def test_redeem_without_account_is_refused(tiers, make_client):
    with pytest.raises(AccountNotFound):
        points_redeem(client_id=make_client().id, points=1, reason="x")
    assert not PointsEntry.objects.exists()


def test_database_refuses_a_negative_balance(tiers, make_client):
    # given
    account = account_with(make_client(), tiers["base"], 10)

    # when / then
    with pytest.raises(IntegrityError), transaction.atomic():
        LoyaltyAccount.objects.filter(id=account.id).update(balance=-1)
    account.refresh_from_db()
    assert account.balance == 10


def test_database_refuses_editing_a_ledger_entry(tiers, make_client):
    # given
    account = account_with(make_client(), tiers["base"], 10)

    # when / then
    with pytest.raises(DatabaseError), transaction.atomic():
        PointsEntry.objects.filter(account=account).update(points=1000)
    assert ledger(account) == [("adjust", 10)]


# Adjustment -------------------------------------------------------------------------------------


def test_adjust_adds_and_takes_away_with_audit(tiers, make_client, admin_user):
    # given
    client = make_client()
    account = account_with(client, tiers["base"])

    # when
    points_adjust(account_id=account.id, points=40, reason="goodwill", actor=admin_user)
    points_adjust(account_id=account.id, points=-15, reason="mistake", actor=admin_user)

    # then
    account.refresh_from_db()
    assert account.balance == 25
    assert ledger(account) == [("adjust", 40), ("adjust", -15)]
    assert list(
        AuditLog.objects.filter(client=client)
        .order_by("id")
        .values_list("action", "actor_id", "changes__points", "changes__balance_after")
    ) == [
        (AuditAction.POINTS_ADJUSTED, admin_user.id, 40, 40),
        (AuditAction.POINTS_ADJUSTED, admin_user.id, -15, 25),
    ]


def test_adjust_refuses_to_go_below_zero_or_without_reason(tiers, make_client):
    account = account_with(make_client(), tiers["base"], 5)
    with pytest.raises(InsufficientPoints):
        points_adjust(account_id=account.id, points=-6, reason="too much")
    with pytest.raises(LoyaltyError):
        points_adjust(account_id=account.id, points=3, reason="  ")
    with pytest.raises(InvalidPoints):
        points_adjust(account_id=account.id, points=0, reason="nothing")
    account.refresh_from_db()
    assert (account.balance, ledger(account)) == (5, [("adjust", 5)])


# Expiry -----------------------------------------------------------------------------------------


def earn(account: LoyaltyAccount, purchase: Purchase, points: int, expires_at) -> None:
    """An earn entry with a chosen expiry, balance moved as accrual would."""
    PointsEntry.objects.create(
        account=account,
        kind=EntryKind.EARN,
        points=points,
        purchase=purchase,
        expires_at=expires_at,
    )
    LoyaltyAccount.objects.filter(id=account.id).update(balance=account.balance + points)
    account.refresh_from_db()


def test_expiry_is_fifo_after_redemptions_and_idempotent(tiers, make_client, make_purchase, now):
    # given 100 points expiring yesterday, 50 next month, 30 redeemed in between
    client = make_client()
    account = account_with(client, tiers["base"])
    earn(account, make_purchase(client, "10000"), 100, now - timedelta(days=1))
    earn(account, make_purchase(client, "5000"), 50, now + timedelta(days=30))
    points_redeem(account_id=account.id, points=30, reason="order")

    # when
    expired = points_expire(at=now)
    again = points_expire(at=now)

    # then 70 expire once
    assert (expired, again) == (70, 0)
    account.refresh_from_db()
    assert account.balance == 50
    assert ledger(account) == [("earn", 100), ("earn", 50), ("redeem", -30), ("expire", -70)]

    # and when the second lot's time comes, its 50 expire
    assert points_expire(at=now + timedelta(days=31)) == 50
    account.refresh_from_db()
    assert account.balance == 0


def test_expiry_leaves_accounts_whose_redemptions_covered_expiring_points(
    tiers, make_client, make_purchase, now
):
    # given 40 expiring yesterday but 60 redeemed, and an account with nothing due
    client, other = make_client(), make_client()
    covered = account_with(client, tiers["base"])
    earn(covered, make_purchase(client, "4000"), 40, now - timedelta(days=1))
    earn(covered, make_purchase(client, "8000"), 80, now + timedelta(days=10))
    points_redeem(account_id=covered.id, points=60, reason="order")
    fresh = account_with(other, tiers["base"])
    earn(fresh, make_purchase(other, "1000"), 10, now + timedelta(days=1))

    # when
    assert points_expire(at=now) == 0

    # then nothing was written
    assert not PointsEntry.objects.filter(kind=EntryKind.EXPIRE).exists()
    assert dict(LoyaltyAccount.objects.values_list("id", "balance")) == {
        covered.id: 60,
        fresh.id: 10,
    }


def test_expiry_query_count_does_not_grow_with_accounts(
    tiers, make_client, make_purchase, now, django_assert_max_num_queries
):
    # given 30 accounts with points due
    for _ in range(30):
        client = make_client()
        account = account_with(client, tiers["base"])
        earn(account, make_purchase(client, "1000"), 10, now - timedelta(days=1))

    # when / then
    with django_assert_max_num_queries(8):
        assert points_expire(at=now) == 300
    assert set(LoyaltyAccount.objects.values_list("balance", flat=True)) == {0}


# Tiers ------------------------------------------------------------------------------------------


def test_tiers_follow_spend_within_each_tiers_window(tiers, make_client, make_purchase, now):
    # given
    nobody, silver, gold, old_gold, just_short = (make_client() for _ in range(5))
    make_purchase(silver, "10000", days_ago=300)  # Silver: 10 000 within 365 days
    make_purchase(gold, "30000", days_ago=10)
    make_purchase(gold, "20000", days_ago=170)  # Gold: 50 000 within 180 days
    make_purchase(old_gold, "60000", days_ago=200)  # outside Gold's 180 days, inside Silver's 365
    make_purchase(just_short, "9999.99", days_ago=5)
    make_purchase(just_short, "5000", days_ago=400)  # outside every window
    account_ensure_many(client_ids=[c.id for c in (nobody, silver, gold, old_gold, just_short)])

    # when
    counts = tiers_recompute(at=now)

    # then
    assert counts == {"Base": 2, "Silver": 2, "Gold": 1}
    assert dict(LoyaltyAccount.objects.values_list("client__last_name", "tier__name")) == {
        nobody.last_name: "Base",
        silver.last_name: "Silver",
        gold.last_name: "Gold",
        old_gold.last_name: "Silver",
        just_short.last_name: "Base",
    }
    assert dict(LoyaltyAccount.objects.values_list("client_id", "rolling_spend")) == {
        nobody.id: Decimal("0"),
        silver.id: Decimal("10000"),
        gold.id: Decimal("50000"),
        old_gold.id: Decimal("60000"),
        just_short.id: Decimal("9999.99"),
    }
    assert set(LoyaltyAccount.objects.values_list("tier_recomputed_at", flat=True)) == {now}


def test_tiers_demote_when_spend_drops_out_of_the_window(tiers, make_client, make_purchase, now):
    # given a Gold client whose big purchase was 100 days ago
    client = make_client()
    make_purchase(client, "55000", days_ago=100)
    LoyaltyAccount.objects.create(client=client, tier=tiers["base"])
    assert tiers_recompute(at=now)["Gold"] == 1

    # when recomputed 100 days later (200 days after the purchase), then 300 days later
    after_gold = tiers_recompute(at=now + timedelta(days=100))
    after_silver = tiers_recompute(at=now + timedelta(days=300))

    # then
    assert after_gold == {"Base": 0, "Silver": 1, "Gold": 0}
    assert after_silver == {"Base": 1, "Silver": 0, "Gold": 0}
    account = LoyaltyAccount.objects.get()
    assert (account.tier_id, account.rolling_spend) == (tiers["base"].id, Decimal("0"))


@pytest.mark.parametrize("count", [1, 40])
def test_tiers_recompute_query_count_does_not_grow_with_accounts(
    count, tiers, make_client, make_purchase, now, django_assert_max_num_queries
):
    clients = [make_client() for _ in range(count)]
    for client in clients:
        make_purchase(client, "12000", days_ago=3)
    account_ensure_many(client_ids=[c.id for c in clients])

    with django_assert_max_num_queries(5):
        counts = tiers_recompute(at=now)

    assert counts == {"Base": 0, "Silver": count, "Gold": 0}
