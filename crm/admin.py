"""Admin for the client domain: thin classes that call services; fast on big tables."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.cache import cache
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from crm import services
from crm.admin_import import ClientExportMixin, FileImportAdminMixin
from crm.admin_utils import BigTableAdmin, ReadOnlyAdminMixin
from crm.models import (
    AuditLog,
    Brand,
    Category,
    Child,
    Client,
    Consent,
    ConsentEvent,
    Event,
    Interest,
    Pet,
    Product,
    Purchase,
    PurchaseItem,
)
from crm.phones import normalize_phone
from crm.selectors import client_search
from loyalty.tasks import accrue_points_enqueue
from segments.admin import add_selected_to_segment

admin.site.site_header = _("Lichno CRM")
admin.site.site_title = _("Lichno")
admin.site.index_title = _("Clients, offers and campaigns")


# Clients ---------------------------------------------------------------------------------------


class CityFilter(admin.SimpleListFilter):
    title = _("city")
    parameter_name = "city"
    cache_seconds = 600

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        # DISTINCT over a million rows on every page load is too slow: cache the city list.
        cities = cache.get("crm:client-cities")
        if cities is None:
            cities = list(
                Client.objects.exclude(city="")
                .order_by("city")
                .values_list("city", flat=True)
                .distinct()[:200]
            )
            cache.set("crm:client-cities", cities, self.cache_seconds)
        return [(c, c) for c in cities]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Client]) -> QuerySet[Client]:
        value = self.value()
        return queryset.filter(city=value) if value else queryset


class ChildInline(admin.TabularInline):
    model = Child
    extra = 0


class PetInline(admin.TabularInline):
    model = Pet
    extra = 0


class ConsentInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Consent
    verbose_name_plural = _("current consents (derived from the history)")
    fields = ("channel", "purpose", "is_granted", "changed_at", "source", "wording_version")
    readonly_fields = fields
    extra = 0


class ConsentEventInline(admin.TabularInline):
    """Consent history: existing rows read-only; new rows go through ``consent_record``."""

    model = ConsentEvent
    fields = (
        "occurred_at",
        "channel",
        "purpose",
        "action",
        "source",
        "wording_version",
        "evidence",
        "actor",
        "actor_label",
    )
    readonly_fields = ("actor", "actor_label")
    ordering = ("-occurred_at", "-id")
    extra = 0

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        formset = super().get_formset(request, obj, **kwargs)
        formset.form.base_fields["occurred_at"].initial = timezone.now
        return formset

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Client)
class ClientAdmin(FileImportAdminMixin, ClientExportMixin, BigTableAdmin):
    import_kind = "clients"
    list_display = ("display_name", "phone", "email", "city", "tier", "created_at")
    list_display_links = ("display_name",)
    list_select_related = ("loyalty__tier",)
    list_filter = (
        CityFilter,
        "gender",
        "loyalty__tier",
        "preferred_channel",
        "family_status",
        "source",
        "is_anonymized",
    )
    search_fields = ("last_name",)  # shows the box; the search itself is crm.selectors
    search_help_text = _("Phone in any format, e-mail, external ID, or last [first] name.")
    ordering = ("-id",)
    autocomplete_fields = ("interests",)
    inlines = (ConsentInline, ConsentEventInline, ChildInline, PetInline)
    actions = (add_selected_to_segment,)
    readonly_fields = (
        "related_links",
        "created_at",
        "updated_at",
        "is_anonymized",
        "anonymized_at",
    )
    fieldsets = (
        (
            None,
            {"fields": ("last_name", "first_name", "middle_name", "gender", "birth_date")},
        ),
        (
            _("Contacts"),
            {
                "fields": (
                    "phone",
                    "email",
                    "city",
                    "region",
                    "time_zone",
                    "preferred_channel",
                    "preferred_contact_time",
                )
            },
        ),
        (
            _("Profile"),
            {"fields": ("family_status", "occupation", "education", "interests", "attributes")},
        ),
        (
            _("System"),
            {
                "fields": (
                    "external_id",
                    "source",
                    "related_links",
                    "created_at",
                    "updated_at",
                    "is_anonymized",
                    "anonymized_at",
                )
            },
        ),
    )

    @admin.display(description=_("name"), ordering="last_name")
    def display_name(self, obj: Client) -> str:
        return str(obj)

    @admin.display(description=_("tier"))
    def tier(self, obj: Client) -> str:
        account = getattr(obj, "loyalty", None)
        return str(account.tier) if account and account.tier else "—"

    @admin.display(description=_("history"))
    def related_links(self, obj: Client) -> str:
        if obj.pk is None:
            return "—"
        links = [
            (reverse("admin:crm_purchase_changelist"), _("purchases")),
            (reverse("admin:crm_event_changelist"), _("events")),
            (reverse("admin:crm_auditlog_changelist"), _("audit log")),
        ]
        return format_html(
            " · ".join(['<a href="{}?client__id__exact={}">{}</a>'] * len(links)),
            *[part for url, label in links for part in (url, obj.pk, label)],
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Client], search_term: str
    ) -> tuple[QuerySet[Client], bool]:
        return client_search(queryset, search_term), False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Clients are anonymized, never deleted: purchases and consent history must remain.
        return False

    def save_model(self, request: HttpRequest, obj: Client, form: Any, change: bool) -> None:
        services.client_save(client=obj, actor=request.user, changed_fields=form.changed_data)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if formset.model is not ConsentEvent:
            super().save_formset(request, form, formset, change)
            return
        changes = [
            services.ConsentChange(
                client_id=form.instance.pk,
                channel=f.cleaned_data["channel"],
                purpose=f.cleaned_data["purpose"],
                action=f.cleaned_data["action"],
                source=f.cleaned_data["source"],
                wording_version=f.cleaned_data["wording_version"],
                occurred_at=f.cleaned_data["occurred_at"],
                evidence=f.cleaned_data.get("evidence", ""),
                actor_id=request.user.pk,
                actor_label=request.user.get_username(),
            )
            for f in formset.extra_forms
            if f.has_changed() and f.is_valid()
        ]
        services.consent_record_many(changes=changes)


@admin.register(Interest)
class InterestAdmin(admin.ModelAdmin):
    search_fields = ("name",)
    list_display = ("name",)


@admin.register(ConsentEvent)
class ConsentEventAdmin(FileImportAdminMixin, BigTableAdmin):
    """The consent history: new entries only, through the consent service."""

    import_kind = "consents"
    list_display = (
        "client",
        "channel",
        "purpose",
        "action",
        "source",
        "occurred_at",
        "wording_version",
        "actor",
    )
    list_filter = ("channel", "purpose", "action", "source")
    list_select_related = ("client", "actor")
    raw_id_fields = ("client",)
    ordering = ("-id",)
    fields = (
        "client",
        "channel",
        "purpose",
        "action",
        "source",
        "occurred_at",
        "wording_version",
        "evidence",
    )

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"occurred_at": timezone.now(), **super().get_changeform_initial_data(request)}

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: ConsentEvent, form: Any, change: bool) -> None:
        event = services.consent_record(
            client=obj.client_id,
            channel=obj.channel,
            purpose=obj.purpose,
            action=obj.action,
            source=obj.source,
            wording_version=obj.wording_version,
            occurred_at=obj.occurred_at,
            evidence=obj.evidence,
            actor=request.user,
        )
        obj.pk = event.pk


@admin.register(Consent)
class ConsentAdmin(ReadOnlyAdminMixin, BigTableAdmin):
    list_display = ("client", "channel", "purpose", "is_granted", "changed_at", "source")
    list_filter = ("channel", "purpose", "is_granted", "source")
    list_select_related = ("client",)
    ordering = ("-id",)


# Catalog ---------------------------------------------------------------------------------------


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ("indented_name", "slug", "parent", "sensitive")
    list_filter = ("sensitive",)
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    autocomplete_fields = ("parent",)
    list_select_related = ("parent",)

    @admin.display(description=_("name"), ordering="path")
    def indented_name(self, obj: Category) -> str:
        depth = max(obj.path.count("/") - 2, 0)
        return format_html("{}{}", "— " * depth, obj.name)

    def save_model(self, request: HttpRequest, obj: Category, form: Any, change: bool) -> None:
        services.category_save(category=obj)


@admin.register(Brand)
class BrandAdmin(admin.ModelAdmin):
    list_display = ("name", "is_private_label")
    list_filter = ("is_private_label",)
    search_fields = ("name",)


@admin.register(Product)
class ProductAdmin(FileImportAdminMixin, admin.ModelAdmin):
    import_kind = "products"
    list_display = ("sku", "name", "category", "brand", "price", "cost", "in_stock", "active")
    list_filter = ("active", "in_stock", "brand__is_private_label", "category", "brand")
    list_select_related = ("category", "brand")
    search_fields = ("sku", "name")
    autocomplete_fields = ("category", "brand")
    ordering = ("name",)


# Purchases and events --------------------------------------------------------------------------


class PurchaseItemInline(admin.TabularInline):
    model = PurchaseItem
    fields = ("product", "quantity", "unit_price", "discount")
    autocomplete_fields = ("product",)
    extra = 1

    def get_queryset(self, request: HttpRequest) -> QuerySet[PurchaseItem]:
        return super().get_queryset(request).select_related("product")


@admin.register(Purchase)
class PurchaseAdmin(FileImportAdminMixin, BigTableAdmin):
    import_kind = "purchases"
    list_display = ("__str__", "client", "purchased_at", "channel", "store", "total")
    list_select_related = ("client",)
    list_filter = ("channel", ("purchased_at", admin.DateFieldListFilter))
    search_fields = ("external_id",)
    search_help_text = _("Purchase external ID or the client's phone in any format.")
    raw_id_fields = ("client",)
    ordering = ("-purchased_at",)
    inlines = (PurchaseItemInline,)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Purchase], search_term: str
    ) -> tuple[QuerySet[Purchase], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        phone = normalize_phone(term)
        if phone:
            return queryset.filter(client__phone=phone), False
        return queryset.filter(external_id=term), False

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        # Items need the purchase's client and time before the row can be written.
        for item_form in formset.forms:
            instance = item_form.instance
            instance.client_id = form.instance.client_id
            instance.purchased_at = form.instance.purchased_at
        super().save_formset(request, form, formset, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        services.purchase_finalize(purchase=form.instance)
        accrue_points_enqueue(purchase_ids=[form.instance.pk])


@admin.register(Event)
class EventAdmin(ReadOnlyAdminMixin, BigTableAdmin):
    list_display = ("occurred_at", "type", "client", "product")
    list_filter = ("type",)
    list_select_related = ("client", "product")
    raw_id_fields = ("client", "product")
    ordering = ("-id",)


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdminMixin, BigTableAdmin):
    list_display = ("occurred_at", "action", "actor", "actor_label", "client")
    list_filter = ("action",)
    list_select_related = ("actor", "client")
    ordering = ("-id",)
