"""Admin for the client domain: thin classes that call services; fast on big tables."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from crm import privacy, services, tasks
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
    actions = (
        add_selected_to_segment,
        "export_personal_data_json",
        "export_personal_data_csv",
        "anonymize_selected",
    )
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

    # Personal data (152-FZ): export, anonymization -------------------------------------------

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # An anonymized client is a closed record: nobody types personal data back into it.
        if obj is not None and obj.is_anonymized:
            return False
        return super().has_change_permission(request, obj)

    def has_export_personal_data_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("crm.export_personal_data")

    def has_anonymize_client_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("crm.anonymize_client")

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/personal-data.<str:file_format>",
                wrap(self.personal_data_view),
                name="crm_client_personal_data",
            ),
            path(
                "<path:object_id>/anonymize/",
                wrap(self.anonymize_view),
                name="crm_client_anonymize",
            ),
            *super().get_urls(),
        ]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "can_export_personal_data": self.has_export_personal_data_permission(request),
            "can_anonymize_client": self.has_anonymize_client_permission(request),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def personal_data_view(
        self, request: HttpRequest, object_id: str, file_format: str
    ) -> HttpResponse:
        if not self.has_export_personal_data_permission(request):
            raise PermissionDenied
        client = get_object_or_404(Client, pk=object_id)
        return self._personal_data_response(request, [client.pk], file_format)

    def _personal_data_response(
        self, request: HttpRequest, client_ids: list[int], file_format: str
    ) -> HttpResponse:
        if file_format not in ("json", "csv"):
            raise PermissionDenied
        data = privacy.personal_data_export(
            client_ids=client_ids, actor=request.user, file_format=file_format
        )
        stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
        name = f"client-{client_ids[0]}" if len(client_ids) == 1 else f"clients-{len(client_ids)}"
        if file_format == "json":
            response = HttpResponse(
                privacy.personal_data_to_json(data), content_type="application/json"
            )
        else:
            # With a BOM: Excel then reads the Cyrillic as UTF-8.
            response = HttpResponse(
                "\ufeff" + privacy.personal_data_to_csv(data),
                content_type="text/csv; charset=utf-8",
            )
        response["Content-Disposition"] = (
            f'attachment; filename="personal-data-{name}-{stamp}.{file_format}"'
        )
        response["Cache-Control"] = "no-store"
        return response

    def _export_selected(
        self, request: HttpRequest, queryset: QuerySet[Client], file_format: str
    ) -> HttpResponse | None:
        ids = list(
            queryset.order_by("pk").values_list("pk", flat=True)[: privacy.EXPORT_MAX_CLIENTS + 1]
        )
        if len(ids) > privacy.EXPORT_MAX_CLIENTS:
            self.message_user(
                request,
                _("Select at most %(count)d clients for a personal data export.")
                % {"count": privacy.EXPORT_MAX_CLIENTS},
                messages.ERROR,
            )
            return None
        return self._personal_data_response(request, ids, file_format)

    @admin.action(
        description=_("Export personal data of selected clients (JSON)"),
        permissions=["export_personal_data"],
    )
    def export_personal_data_json(
        self, request: HttpRequest, queryset: QuerySet[Client]
    ) -> HttpResponse | None:
        return self._export_selected(request, queryset, "json")

    @admin.action(
        description=_("Export personal data of selected clients (CSV)"),
        permissions=["export_personal_data"],
    )
    def export_personal_data_csv(
        self, request: HttpRequest, queryset: QuerySet[Client]
    ) -> HttpResponse | None:
        return self._export_selected(request, queryset, "csv")

    @admin.action(
        description=_("Anonymize selected clients (irreversible)"),
        permissions=["anonymize_client"],
    )
    def anonymize_selected(
        self, request: HttpRequest, queryset: QuerySet[Client]
    ) -> HttpResponse | None:
        pending = queryset.filter(is_anonymized=False)
        if request.POST.get("confirm") == "yes":
            ids = list(pending.values_list("pk", flat=True))
            self._anonymize(request, ids)
            return None
        count = pending.count()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Anonymize clients"),
            "count": count,
            "examples": list(pending.order_by("pk")[:20]),
            "action_name": "anonymize_selected",
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "cancel_url": request.get_full_path(),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/crm/client/anonymize_confirmation.html", context)

    def anonymize_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not self.has_anonymize_client_permission(request):
            raise PermissionDenied
        client = get_object_or_404(Client, pk=object_id)
        change_url = reverse("admin:crm_client_change", args=[client.pk])
        if client.is_anonymized:
            self.message_user(request, _("This client is already anonymized."), messages.WARNING)
            return HttpResponseRedirect(change_url)
        if request.method == "POST" and request.POST.get("confirm") == "yes":
            self._anonymize(request, [client.pk])
            return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Anonymize client"),
            "original": client,
            "count": 1,
            "examples": [client],
            "cancel_url": change_url,
        }
        return TemplateResponse(request, "admin/crm/client/anonymize_confirmation.html", context)

    def _anonymize(self, request: HttpRequest, ids: list[int]) -> None:
        if len(ids) > privacy.BATCH_SIZE:
            # Thousands of clients: in the background, in chunks, after this request commits.
            count = tasks.client_anonymize_enqueue(client_ids=ids, actor_id=request.user.pk)
            self.message_user(
                request,
                ngettext(
                    "%(count)d client will be anonymized in the background.",
                    "%(count)d clients will be anonymized in the background.",
                    count,
                )
                % {"count": count},
                messages.SUCCESS,
            )
            return
        done = privacy.client_anonymize_many(client_ids=ids, actor=request.user)
        self.message_user(
            request,
            ngettext("%(count)d client anonymized.", "%(count)d clients anonymized.", len(done))
            % {"count": len(done)},
            messages.SUCCESS,
        )

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
        # The admin's change message reads what the formset saved: the new events, nothing else
        # (history rows are never changed or deleted).
        formset.new_objects = services.consent_record_many(changes=changes)
        formset.changed_objects = []
        formset.deleted_objects = []


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

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditLog]:
        # Operators see what they did themselves; who else read a card is not theirs to know.
        queryset = super().get_queryset(request)
        if request.user.has_perm("crm.view_all_auditlog"):
            return queryset
        return queryset.filter(actor=request.user)
