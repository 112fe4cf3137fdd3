"""Loyalty use cases: the only code that moves points or changes a tier.

Every balance change happens in the same transaction as the ledger row that explains it, with
``F()`` arithmetic on the row (never a recomputed SUM), so concurrent workers cannot lose an
update. Batch services are set-based: a handful of statements per batch, never one per client.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import (
    Case,
    Count,
    DecimalField,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Q,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from crm.db.raw import chunks
from crm.models import AuditAction, Purchase
from crm.services import audit_write
from loyalty.models import EntryKind, LoyaltyAccount, PointsEntry, Tier

# Rows per INSERT ... VALUES / per UPDATE ... CASE statement: keeps SQLite under its bound
# parameter limit (32766) and PostgreSQL statements a reasonable size.
_STATEMENT_ROWS = 2000


class LoyaltyError(Exception):
    """A loyalty operation was refused; ``str()`` is a translated message for a person."""

    default_message = _("The loyalty operation was refused.")

    def __init__(self, message: Any = None) -> None:
        self.message = message if message is not None else self.default_message
        super().__init__(self.message)

    def __str__(self) -> str:
        return str(self.message)


class AccountNotFound(LoyaltyError):
    default_message = _("The client has no loyalty account.")


class InvalidPoints(LoyaltyError):
    default_message = _("The number of points is not valid.")


class InsufficientPoints(LoyaltyError):
    default_message = _("Not enough points on the account.")

    def __init__(self, *, balance: int, requested: int) -> None:
        self.balance = balance
        self.requested = requested
        super().__init__(
            _("Not enough points: the balance is %(balance)d, %(requested)d requested.")
            % {"balance": balance, "requested": requested}
        )


# Accounts --------------------------------------------------------------------------------------


def _base_tier_id() -> int | None:
    return Tier.objects.order_by("rank").values_list("id", flat=True).first()


def account_ensure_many(*, client_ids: Iterable[int], base_tier_id: int | None = None) -> None:
    """Create the missing accounts of ``client_ids`` at the base (lowest-rank) tier.

    One bulk INSERT ignoring conflicts, so concurrent callers are safe.
    """
    ids = sorted(set(client_ids))
    if not ids:
        return
    if base_tier_id is None:
        base_tier_id = _base_tier_id()
    LoyaltyAccount.objects.bulk_create(
        [LoyaltyAccount(client_id=client_id, tier_id=base_tier_id) for client_id in ids],
        ignore_conflicts=True,
        batch_size=_STATEMENT_ROWS,
    )


def _balances_add(*, deltas: dict[int, int], now: datetime) -> None:
    """Add ``deltas[account_id]`` to each balance: lock in id order, one CASE UPDATE per chunk.

    The caller holds a transaction. Locking in id order keeps concurrent batch services (accrual,
    expiry) from deadlocking on each other's accounts.
    """
    account_ids = sorted(account_id for account_id, delta in deltas.items() if delta)
    for chunk in chunks(account_ids, _STATEMENT_ROWS):
        list(
            LoyaltyAccount.objects.select_for_update()
            .filter(id__in=chunk)
            .order_by("id")
            .values_list("id", flat=True)
        )
        LoyaltyAccount.objects.filter(id__in=chunk).update(
            balance=F("balance")
            + Case(
                *[When(id=account_id, then=Value(deltas[account_id])) for account_id in chunk],
                default=Value(0),
                output_field=IntegerField(),
            ),
            updated_at=now,
        )


# Accrual ---------------------------------------------------------------------------------------


def _earn_points(total: Decimal, earn_rate: Decimal) -> int:
    return math.floor(total * earn_rate / 100)


def _pending_purchases() -> Any:
    earned = PointsEntry.objects.filter(purchase_id=OuterRef("pk"), kind=EntryKind.EARN)
    return Purchase.objects.filter(~Exists(earned))


def _accrue_batch(*, purchase_ids: Sequence[int], base_tier_id: int | None) -> int:
    """Accrue one batch; returns the number of earn entries this call inserted."""
    rows = list(
        _pending_purchases()
        .filter(id__in=purchase_ids)
        .order_by("id")
        .values_list("id", "client_id", "total", "purchased_at")
    )
    if not rows:
        return 0
    account_ensure_many(client_ids=[row[1] for row in rows], base_tier_id=base_tier_id)
    accounts = {
        client_id: (account_id, earn_rate)
        for account_id, client_id, earn_rate in LoyaltyAccount.objects.filter(
            client_id__in={row[1] for row in rows}
        ).values_list("id", "client_id", "tier__earn_rate")
    }
    now = timezone.now()
    lifetime = timedelta(days=settings.LOYALTY_POINTS_LIFETIME_DAYS)
    adapt = connection.ops.adapt_datetimefield_value
    values: list[tuple[Any, ...]] = []
    for purchase_id, client_id, total, purchased_at in rows:
        account_id, earn_rate = accounts[client_id]
        if earn_rate is None:
            continue
        points = _earn_points(total, earn_rate)
        if points > 0:
            values.append(
                (account_id, points, purchase_id, adapt(purchased_at + lifetime), adapt(now))
            )
    if not values:
        return 0

    table = PointsEntry._meta.db_table
    deltas: dict[int, int] = defaultdict(int)
    created = 0
    with transaction.atomic():
        with connection.cursor() as cursor:
            for chunk in chunks(values, _STATEMENT_ROWS):
                placeholders = ", ".join(["(%s, 'earn', %s, %s, %s, '', %s)"] * len(chunk))
                # ON CONFLICT DO NOTHING against points_one_earn_per_purchase: a concurrent run
                # that got there first wins, and RETURNING lists only the rows this run wrote,
                # so only those move balances.
                cursor.execute(
                    f"INSERT INTO {table} "
                    "(account_id, kind, points, purchase_id, expires_at, reason, created_at) "
                    f"VALUES {placeholders} ON CONFLICT DO NOTHING RETURNING account_id, points",
                    [param for row in chunk for param in row],
                )
                for account_id, points in cursor.fetchall():
                    deltas[account_id] += points
                    created += 1
        _balances_add(deltas=deltas, now=now)
    return created


def points_accrue_for_purchases(
    *, purchase_ids: Iterable[int] | None = None, batch_size: int = 5000
) -> int:
    """Write the earn entry of every purchase that has none yet; returns entries created.

    Points are ``floor(total * earn_rate / 100)`` at the tier of the client's account (created at
    the base tier when missing); purchases earning no points get no entry. Entries expire
    ``LOYALTY_POINTS_LIFETIME_DAYS`` after the purchase. With ``purchase_ids=None`` every pending
    purchase is considered except those whose points would already have expired.

    Idempotent, and safe for concurrent runs over the same purchases.
    """
    base_tier_id = _base_tier_id()
    created = 0
    if purchase_ids is not None:
        ids = sorted(set(purchase_ids))
        for chunk in chunks(ids, batch_size):
            created += _accrue_batch(purchase_ids=chunk, base_tier_id=base_tier_id)
        return created

    since = timezone.now() - timedelta(days=settings.LOYALTY_POINTS_LIFETIME_DAYS)
    last_id = 0
    while True:
        chunk = list(
            _pending_purchases()
            .filter(id__gt=last_id, purchased_at__gt=since)
            .order_by("id")
            .values_list("id", flat=True)[:batch_size]
        )
        if not chunk:
            return created
        created += _accrue_batch(purchase_ids=chunk, base_tier_id=base_tier_id)
        if len(chunk) < batch_size:
            return created
        last_id = chunk[-1]


# Redemption and adjustment ---------------------------------------------------------------------


def _account_lock(*, account_id: int | None, client_id: int | None) -> LoyaltyAccount:
    if (account_id is None) == (client_id is None):
        raise TypeError("Pass exactly one of account_id and client_id.")
    lookup = {"id": account_id} if account_id is not None else {"client_id": client_id}
    try:
        return LoyaltyAccount.objects.select_for_update().get(**lookup)
    except LoyaltyAccount.DoesNotExist:
        raise AccountNotFound() from None


def points_redeem(
    *,
    points: int,
    reason: str,
    account_id: int | None = None,
    client_id: int | None = None,
    actor: Any = None,
    actor_label: str = "",
) -> PointsEntry:
    """Spend ``points`` (> 0) from an account; raises ``InsufficientPoints`` if it holds fewer."""
    if not isinstance(points, int) or points <= 0:
        raise InvalidPoints(_("Points to redeem must be a positive whole number."))
    with transaction.atomic():
        account = _account_lock(account_id=account_id, client_id=client_id)
        if account.balance < points:
            raise InsufficientPoints(balance=account.balance, requested=points)
        entry = PointsEntry.objects.create(
            account=account, kind=EntryKind.REDEEM, points=-points, reason=reason
        )
        LoyaltyAccount.objects.filter(id=account.id).update(
            balance=F("balance") - points, updated_at=timezone.now()
        )
        balance_after = account.balance - points
        audit_write(
            action=AuditAction.POINTS_REDEEMED,
            client_id=account.client_id,
            actor=actor,
            actor_label=actor_label,
            changes={
                "points": points,
                "balance_after": balance_after,
                "reason": reason,
                "entry_id": entry.id,
            },
        )
    account.balance = balance_after
    return entry


def points_adjust(
    *,
    account_id: int,
    points: int,
    reason: str,
    actor: Any = None,
    actor_label: str = "",
) -> PointsEntry:
    """A manual correction of ``points`` (positive or negative, never zero) with its reason."""
    if not isinstance(points, int) or points == 0:
        raise InvalidPoints(_("An adjustment must be a non-zero whole number of points."))
    if not reason.strip():
        raise LoyaltyError(_("An adjustment needs a reason."))
    with transaction.atomic():
        account = _account_lock(account_id=account_id, client_id=None)
        if account.balance + points < 0:
            raise InsufficientPoints(balance=account.balance, requested=-points)
        entry = PointsEntry.objects.create(
            account=account, kind=EntryKind.ADJUST, points=points, reason=reason
        )
        LoyaltyAccount.objects.filter(id=account.id).update(
            balance=F("balance") + points, updated_at=timezone.now()
        )
        balance_after = account.balance + points
        audit_write(
            action=AuditAction.POINTS_ADJUSTED,
            client_id=account.client_id,
            actor=actor,
            actor_label=actor_label,
            changes={
                "points": points,
                "balance_after": balance_after,
                "reason": reason,
                "entry_id": entry.id,
            },
        )
    return entry


# Expiry ----------------------------------------------------------------------------------------


def _expirable(*, at: datetime) -> Any:
    """Accounts annotated with ``to_expire`` (FIFO, capped at the balance), as of ``at``.

    Spent points (redeemed, expired, negative adjustments) are taken from the earliest-expiring
    earned points first, so what has expired by ``at`` is what was earned with ``expires_at <= at``
    minus everything ever spent, never below zero.
    """
    earned = (
        PointsEntry.objects.filter(account_id=OuterRef("pk"), kind=EntryKind.EARN)
        .filter(expires_at__lte=at)
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
    return LoyaltyAccount.objects.annotate(
        earned_expired=Coalesce(Subquery(earned), 0),
        spent=Coalesce(Subquery(spent), 0),
    ).annotate(to_expire=F("earned_expired") + F("spent"))


def points_expire(*, at: datetime | None = None, batch_size: int = 5000) -> int:
    """Expire points that reached ``expires_at`` by ``at`` (default now); returns points expired.

    One expire entry per account. Idempotent: a second run at the same ``at`` expires nothing.
    """
    at = at or timezone.now()
    candidates = list(
        _expirable(at=at)
        .filter(to_expire__gt=0, balance__gt=0)
        .order_by("id")
        .values_list("id", flat=True)
    )
    expired = 0
    reason = str(_("Points expired"))
    for chunk in chunks(candidates, batch_size):
        with transaction.atomic():
            # Lock first (in id order), then read the sums in a new statement so that they
            # include whatever a concurrent redemption committed while we waited.
            list(
                LoyaltyAccount.objects.select_for_update()
                .filter(id__in=chunk)
                .order_by("id")
                .values_list("id", flat=True)
            )
            rows = (
                _expirable(at=at)
                .filter(id__in=chunk, to_expire__gt=0, balance__gt=0)
                .values_list("id", "to_expire", "balance")
            )
            deltas = {account_id: -min(due, balance) for account_id, due, balance in rows}
            if not deltas:
                continue
            PointsEntry.objects.bulk_create(
                [
                    PointsEntry(
                        account_id=account_id, kind=EntryKind.EXPIRE, points=delta, reason=reason
                    )
                    for account_id, delta in deltas.items()
                ],
                batch_size=_STATEMENT_ROWS,
            )
            _balances_add(deltas=deltas, now=timezone.now())
            expired -= sum(deltas.values())
    return expired


# Tiers -----------------------------------------------------------------------------------------


def _spend_since(since: datetime, until: datetime) -> Any:
    spend = (
        Purchase.objects.filter(
            client_id=OuterRef("client_id"), purchased_at__gt=since, purchased_at__lte=until
        )
        .values("client_id")
        .annotate(s=Sum("total"))
        .values("s")
    )
    return Coalesce(
        Subquery(spend, output_field=DecimalField(max_digits=14, decimal_places=2)),
        Value(Decimal("0")),
        output_field=DecimalField(max_digits=14, decimal_places=2),
    )


def tiers_recompute(*, at: datetime | None = None) -> dict[str, int]:
    """Recompute every account's rolling spend and tier as of ``at`` (default now).

    An account gets the highest-rank tier whose ``qualifying_spend`` its spend over that tier's
    own ``window_days`` meets, else the base tier, so accounts are demoted as well as promoted.
    One UPDATE for all accounts; returns the number of accounts per tier name.
    """
    at = at or timezone.now()
    tiers = list(Tier.objects.order_by("rank"))
    rolling_since = at - timedelta(days=settings.LOYALTY_ROLLING_SPEND_DAYS)
    fields: dict[str, Any] = {
        "rolling_spend": _spend_since(rolling_since, at),
        "tier_recomputed_at": at,
        "updated_at": timezone.now(),
    }
    if tiers:
        base, better = tiers[0], tiers[1:]
        fields["tier_id"] = Case(
            *[
                When(
                    Q(
                        Exists(
                            Purchase.objects.filter(client_id=OuterRef("client_id"))
                            .filter(
                                purchased_at__gt=at - timedelta(days=tier.window_days),
                                purchased_at__lte=at,
                            )
                            .values("client_id")
                            .annotate(s=Sum("total"))
                            .filter(s__gte=tier.qualifying_spend)
                        )
                    ),
                    then=Value(tier.id),
                )
                for tier in reversed(better)
            ],
            default=Value(base.id),
            output_field=IntegerField(),
        )
    with transaction.atomic():
        LoyaltyAccount.objects.update(**fields)
    counts = {tier.name: 0 for tier in tiers}
    for name, count in (
        LoyaltyAccount.objects.filter(tier__isnull=False)
        .values_list("tier__name")
        .annotate(n=Count("id"))
        .values_list("tier__name", "n")
    ):
        counts[name] = count
    return counts
