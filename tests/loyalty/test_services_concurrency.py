"""Concurrent workers on PostgreSQL: each thread has its own connection and transaction."""

from __future__ import annotations

import pytest
from django.db.models import Sum

from loyalty.models import EntryKind, LoyaltyAccount, PointsEntry
from loyalty.services import (
    InsufficientPoints,
    points_accrue_for_purchases,
    points_adjust,
    points_redeem,
)
from tests.concurrency import run_together

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_concurrent_redemptions_cannot_overdraw(postgres, tiers, make_client):
    # given 100 points
    account = LoyaltyAccount.objects.create(client=make_client(), tier=tiers["base"])
    points_adjust(account_id=account.id, points=100, reason="opening balance")

    # when two workers redeem 70 each at the same moment
    results = run_together(
        lambda: points_redeem(account_id=account.id, points=70, reason="till 1"),
        lambda: points_redeem(account_id=account.id, points=70, reason="till 2"),
    )

    # then exactly one succeeds
    succeeded = [r for r in results if isinstance(r, PointsEntry)]
    refused = [r for r in results if isinstance(r, InsufficientPoints)]
    assert (len(succeeded), len(refused)) == (1, 1), results
    account.refresh_from_db()
    assert account.balance == 30
    assert PointsEntry.objects.filter(kind=EntryKind.REDEEM).count() == 1
    assert account.entries.aggregate(s=Sum("points"))["s"] == 30


def test_two_concurrent_accrual_runs_earn_once_per_purchase(
    postgres, tiers, make_client, make_purchase
):
    # given 40 purchases of 8 clients
    clients = [make_client() for _ in range(8)]
    purchases = [make_purchase(clients[i % 8], "1000") for i in range(40)]
    ids = [p.id for p in purchases]

    # when two workers accrue the same purchases at once, in small batches
    results = run_together(
        lambda: points_accrue_for_purchases(purchase_ids=ids, batch_size=7),
        lambda: points_accrue_for_purchases(batch_size=5),
    )

    # then every purchase earned exactly once and balances equal the ledger
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(results) == 40
    earned = list(PointsEntry.objects.values_list("purchase_id", flat=True))
    assert sorted(earned) == sorted(ids)
    assert LoyaltyAccount.objects.count() == 8
    for account_id, balance, ledger_sum in LoyaltyAccount.objects.annotate(
        ledger=Sum("entries__points")
    ).values_list("id", "balance", "ledger"):
        assert (account_id, balance) == (account_id, ledger_sum)
    assert set(LoyaltyAccount.objects.values_list("balance", flat=True)) == {50}
