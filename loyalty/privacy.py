"""Loyalty's personal data for ``crm.privacy``: the account and its points ledger.

Nothing is anonymized here: the account holds no names or contacts, and the ledger is an
append-only record of money-like movements that reports and the balance depend on.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db.models import F
from django.utils.translation import gettext_lazy as _

from crm.privacy import Rows, Section, register
from loyalty.models import LoyaltyAccount, PointsEntry


def export_account(client_ids: Sequence[int]) -> Rows:
    return LoyaltyAccount.objects.filter(client_id__in=client_ids).values(
        "client_id", "tier__name", "balance", "rolling_spend", "created_at"
    )


def export_ledger(client_ids: Sequence[int]) -> Rows:
    return (
        PointsEntry.objects.filter(account__client_id__in=client_ids)
        .annotate(client_id=F("account__client_id"))
        .order_by("created_at", "id")
        .values("client_id", "kind", "points", "purchase_id", "expires_at", "reason", "created_at")
    )


register(
    Section(
        "loyalty_account",
        _("loyalty account"),
        export_account,
        single=True,
        models=(LoyaltyAccount,),
    )
)
register(Section("points_ledger", _("points ledger"), export_ledger, models=(PointsEntry,)))
