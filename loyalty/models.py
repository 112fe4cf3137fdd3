"""Loyalty: tiers, one account per client, and an append-only points ledger.

A balance moves only through ``loyalty/services.py``, in the same transaction as the ledger
row that explains it; the database refuses a negative balance and edits of ledger rows.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from crm.models import Client, Purchase, TimeStamped


class Tier(TimeStamped):
    name = models.CharField(_("name"), max_length=50, unique=True)
    rank = models.PositiveSmallIntegerField(
        _("rank"), unique=True, help_text=_("Higher rank is a better tier; the lowest is the base.")
    )
    qualifying_spend = models.DecimalField(
        _("qualifying spend"),
        max_digits=12,
        decimal_places=2,
        default=Decimal("0"),
        help_text=_("Spend within the window needed to reach this tier."),
    )
    window_days = models.PositiveIntegerField(_("window, days"), default=365)
    earn_rate = models.DecimalField(
        _("earn rate, %"),
        max_digits=5,
        decimal_places=2,
        help_text=_("Points per 100 roubles spent."),
    )
    benefit = models.TextField(_("benefit"), blank=True)

    class Meta:
        verbose_name = _("tier")
        verbose_name_plural = _("tiers")
        ordering = ["rank"]
        constraints = [
            models.CheckConstraint(condition=Q(earn_rate__gte=0), name="tier_earn_rate_nonneg"),
            models.CheckConstraint(
                condition=Q(qualifying_spend__gte=0), name="tier_spend_nonnegative"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class LoyaltyAccount(TimeStamped):
    client = models.OneToOneField(
        Client, on_delete=models.PROTECT, related_name="loyalty", verbose_name=_("client")
    )
    tier = models.ForeignKey(
        Tier,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="accounts",
        verbose_name=_("tier"),
    )
    balance = models.IntegerField(_("points balance"), default=0)
    rolling_spend = models.DecimalField(
        _("rolling spend"),
        max_digits=14,
        decimal_places=2,
        default=Decimal("0"),
        help_text=_("Spend over the rolling window, as of the last tier recomputation."),
    )
    tier_recomputed_at = models.DateTimeField(_("tier recomputed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("loyalty account")
        verbose_name_plural = _("loyalty accounts")
        constraints = [
            models.CheckConstraint(condition=Q(balance__gte=0), name="account_balance_nonnegative")
        ]

    def __str__(self) -> str:
        return f"{self.client} ({self.balance})"


class EntryKind(models.TextChoices):
    EARN = "earn", _("earned")
    REDEEM = "redeem", _("redeemed")
    EXPIRE = "expire", _("expired")
    ADJUST = "adjust", _("adjustment")


class PointsEntry(models.Model):
    """One movement of points. Positive points add, negative points take away."""

    account = models.ForeignKey(
        LoyaltyAccount, on_delete=models.PROTECT, related_name="entries", verbose_name=_("account")
    )
    kind = models.CharField(_("kind"), max_length=10, choices=EntryKind.choices)
    points = models.IntegerField(_("points"))
    purchase = models.ForeignKey(
        Purchase,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="points_entries",
        verbose_name=_("purchase"),
    )
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    reason = models.CharField(_("reason"), max_length=255, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("points entry")
        verbose_name_plural = _("points ledger")
        constraints = [
            # Accrual is idempotent: one earn entry per purchase.
            models.UniqueConstraint(
                fields=["purchase"], condition=Q(kind="earn"), name="points_one_earn_per_purchase"
            ),
            models.CheckConstraint(
                condition=(
                    (Q(kind="earn") & Q(points__gt=0) & Q(purchase__isnull=False))
                    | (Q(kind__in=["redeem", "expire"]) & Q(points__lt=0))
                    | (Q(kind="adjust") & ~Q(points=0))
                ),
                name="points_sign_matches_kind",
            ),
        ]
        indexes = [
            models.Index(fields=["account", "-created_at"], name="points_account_time_idx"),
            # The ledger changelist filtered by kind, newest first, and its capped count.
            models.Index(fields=["kind", "-id"], name="points_kind_id_idx"),
            models.Index(
                fields=["expires_at"], condition=Q(kind="earn"), name="points_earn_expiry_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.points:+d}"
