"""Loyalty admin: tiers are edited here; balances move only through ``loyalty.services``."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from crm.admin_utils import BigTableAdmin, ReadOnlyAdminMixin
from crm.models import Client
from crm.selectors import client_search
from loyalty.models import LoyaltyAccount, PointsEntry, Tier
from loyalty.services import LoyaltyError, points_adjust

RECENT_ENTRIES = 20


@admin.register(Tier)
class TierAdmin(admin.ModelAdmin):
    list_display = ("rank", "name", "qualifying_spend", "window_days", "earn_rate")
    list_display_links = ("rank", "name")
    ordering = ("rank",)
    search_fields = ("name",)


class RecentEntriesFormSet(BaseInlineFormSet):
    """Only the latest entries: the ledger of an old account can be long."""

    def get_queryset(self) -> Any:
        if not hasattr(self, "_recent"):
            self._recent = super().get_queryset()[:RECENT_ENTRIES]
        return self._recent


class RecentEntriesInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = PointsEntry
    formset = RecentEntriesFormSet
    verbose_name_plural = _("recent points entries")
    fields = ("created_at", "kind", "points", "purchase", "expires_at", "reason")
    readonly_fields = fields
    ordering = ("-id",)
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).select_related("purchase")


class AccountAdjustForm(forms.ModelForm):
    """The account itself is read-only; the form only offers a manual points adjustment."""

    adjust_points = forms.IntegerField(
        label=_("adjust points by"),
        required=False,
        help_text=_("Positive to add, negative to take away. Leave empty to change nothing."),
    )
    adjust_reason = forms.CharField(label=_("reason for the adjustment"), required=False)

    class Meta:
        model = LoyaltyAccount
        fields: list[str] = []

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        points = cleaned.get("adjust_points")
        if points:
            if not (cleaned.get("adjust_reason") or "").strip():
                self.add_error("adjust_reason", _("An adjustment needs a reason."))
            if self.instance.balance + points < 0:
                self.add_error(
                    "adjust_points",
                    _("The balance is %(balance)d points; it cannot go below zero.")
                    % {"balance": self.instance.balance},
                )
        return cleaned


@admin.register(LoyaltyAccount)
class LoyaltyAccountAdmin(BigTableAdmin):
    form = AccountAdjustForm
    list_display = ("client", "tier", "balance", "rolling_spend", "tier_recomputed_at")
    list_filter = ("tier",)
    list_select_related = ("client", "tier")
    search_fields = ("client__last_name",)  # shows the box; the search is crm.selectors
    search_help_text = _("The client's phone in any format, e-mail, external ID or name.")
    raw_id_fields = ("client",)
    readonly_fields = (
        "client",
        "tier",
        "balance",
        "rolling_spend",
        "tier_recomputed_at",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": readonly_fields}),
        (_("Manual adjustment"), {"fields": ("adjust_points", "adjust_reason")}),
    )
    inlines = (RecentEntriesInline,)
    ordering = ("-id",)

    def get_search_results(
        self, request: HttpRequest, queryset: Any, search_term: str
    ) -> tuple[Any, bool]:
        if not search_term.strip():
            return queryset, False
        clients = client_search(Client.objects.all(), search_term).values("id")
        return queryset.filter(client__in=clients), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Accounts are opened by the loyalty services, at the base tier.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        # Never obj.save(): it would write back a balance read before a concurrent change.
        points = form.cleaned_data.get("adjust_points")
        if not points:
            return
        try:
            points_adjust(
                account_id=obj.pk,
                points=points,
                reason=form.cleaned_data["adjust_reason"],
                actor=request.user,
            )
        except LoyaltyError as error:
            self.message_user(request, str(error), messages.ERROR)
        else:
            self.message_user(
                request,
                _("Adjusted by %(points)+d points.") % {"points": points},
                messages.SUCCESS,
            )


@admin.register(PointsEntry)
class PointsEntryAdmin(ReadOnlyAdminMixin, BigTableAdmin):
    """The ledger, read-only: entries are written by the loyalty services only."""

    list_display = ("id", "account", "kind", "points", "purchase", "expires_at", "created_at")
    list_filter = ("kind",)
    list_select_related = ("account__client", "purchase")
    raw_id_fields = ("account", "purchase")
    search_fields = ("=account__id", "=purchase__external_id")
    ordering = ("-id",)
