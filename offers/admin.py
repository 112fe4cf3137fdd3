"""Admin for offers: thin classes over ``offers.services``; a preview page per offer."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from crm.admin import ReadOnlyAdminMixin
from crm.models import Channel, Client
from crm.phones import normalize_phone
from offers import selectors, services
from offers.assignment import in_holdout
from offers.engine import propose
from offers.models import (
    CrossSellRule,
    Offer,
    OfferVariant,
    ProductAssociation,
    PromoCode,
    PromoPool,
)
from offers.templating import MESSAGE_CONTEXT, REASON_CONTEXT

CONTEXT_HELP = _(
    "Django template syntax. Variables: client.first_name, client.middle_name, client.last_name, "
    "client.name, client.full_name, product.name, product.price, product.price_with_benefit, "
    "products (a list), benefit.text, promo_code, valid_until, tier, points, store, reason, "
    "offer.name. Tags: if, for, with, firstof, now. Filters: date, default, upper, lower, "
    "money, ru_plural:'день,дня,дней' and a few more."
)
REASON_HELP = _(
    "Variables: fact.product, fact.category, fact.brand, fact.days_since, fact.interval_days, "
    "fact.last_date, fact.target, fact.count, client.first_name, product.name."
)


def _apply_errors(form: forms.ModelForm, errors: dict[str, list[str]]) -> None:
    for name, problems in errors.items():
        form.add_error(name if name in form.fields else None, problems)


class OfferForm(forms.ModelForm):
    channels = forms.MultipleChoiceField(
        label=_("channels"),
        choices=Channel.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )

    class Meta:
        model = Offer
        fields = (
            "name",
            "description",
            "goal",
            "status",
            "priority",
            "segments",
            "exclude_segments",
            "channels",
            "starts_at",
            "ends_at",
            "quantity_limit",
            "holdout_percent",
            "benefit_kind",
            "benefit_value",
            "benefit_text",
            "min_margin_percent",
            "promo_pool",
            "store",
            "strategy",
            "fixed_products",
            "fixed_category",
            "products_per_message",
            "lookback_days",
            "recent_days",
            "replenish_lead_days",
            "allow_sensitive",
            "reason_template",
        )
        help_texts = {"reason_template": REASON_HELP}

    # ModelForm's step after the instance is built from the form (private, not in the stubs).
    def _post_clean(self) -> None:
        super()._post_clean()  # type: ignore[misc]
        if self.errors:
            return
        products = self.cleaned_data.get("fixed_products")
        _apply_errors(
            self,
            services.offer_validate(
                offer=self.instance, fixed_products=list(products) if products else []
            ),
        )


class VariantForm(forms.ModelForm):
    class Meta:
        model = OfferVariant
        fields = (
            "name",
            "weight",
            "sms_text",
            "transliterate_sms",
            "voice_script",
            "email_subject",
            "email_body",
        )
        help_texts = {"sms_text": CONTEXT_HELP}
        widgets = {
            "sms_text": forms.Textarea(attrs={"rows": 3, "cols": 80}),
            "voice_script": forms.Textarea(attrs={"rows": 4, "cols": 80}),
            "email_body": forms.Textarea(attrs={"rows": 6, "cols": 80}),
        }

    # ModelForm's step after the instance is built from the form (private, not in the stubs).
    def _post_clean(self) -> None:
        super()._post_clean()  # type: ignore[misc]
        errors, warnings = services.variant_check(variant=self.instance)
        _apply_errors(self, errors)
        self.structure_warnings = warnings


class VariantInline(admin.StackedInline):
    model = OfferVariant
    form = VariantForm
    extra = 0
    min_num = 1
    fields = (
        ("name", "weight"),
        "sms_text",
        "transliterate_sms",
        "voice_script",
        "email_subject",
        "email_body",
    )


@admin.register(Offer)
class OfferAdmin(admin.ModelAdmin):
    form = OfferForm
    inlines = (VariantInline,)
    list_display = (
        "name",
        "goal",
        "status",
        "priority",
        "strategy",
        "benefit",
        "starts_at",
        "ends_at",
        "preview_link",
    )
    list_filter = ("status", "goal", "strategy")
    search_fields = ("name",)
    filter_horizontal = ("segments", "exclude_segments")
    autocomplete_fields = ("fixed_products", "fixed_category", "promo_pool")
    readonly_fields = ("created_by", "created_at", "updated_at")
    change_form_template = "admin/offers/offer/change_form.html"
    fieldsets = (
        (None, {"fields": ("name", "description", "goal", "status", "priority")}),
        (
            _("Who and when"),
            {
                "fields": (
                    "segments",
                    "exclude_segments",
                    "channels",
                    ("starts_at", "ends_at"),
                    "quantity_limit",
                    "holdout_percent",
                )
            },
        ),
        (
            _("Benefit"),
            {
                "fields": (
                    ("benefit_kind", "benefit_value"),
                    "benefit_text",
                    "min_margin_percent",
                    "promo_pool",
                    "store",
                )
            },
        ),
        (
            _("Products and reason"),
            {
                "fields": (
                    "strategy",
                    "fixed_products",
                    "fixed_category",
                    "products_per_message",
                    ("lookback_days", "recent_days", "replenish_lead_days"),
                    "allow_sensitive",
                    "reason_template",
                )
            },
        ),
        (_("System"), {"fields": ("created_by", "created_at", "updated_at")}),
    )

    @admin.display(description=_("benefit"))
    def benefit(self, obj: Offer) -> str:
        from offers.pricing import benefit_text

        return benefit_text(obj.benefit_kind, obj.benefit_value, obj.benefit_text) or "—"

    @admin.display(description=_("preview"))
    def preview_link(self, obj: Offer) -> str:
        url = reverse("admin:offers_offer_preview", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, gettext("preview"))

    def save_model(self, request: HttpRequest, obj: Offer, form: Any, change: bool) -> None:
        services.offer_save(
            offer=obj, fixed_products=form.cleaned_data.get("fixed_products"), actor=request.user
        )

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        super().save_formset(request, form, formset, change)
        for variant_form in formset.forms:
            for warning in getattr(variant_form, "structure_warnings", []):
                name = variant_form.cleaned_data.get("name") or ""
                self.message_user(request, f"{name}: {warning}", messages.WARNING)

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/preview/", view(self.preview_view), name="offers_offer_preview"),
            *super().get_urls(),
        ]

    def preview_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The offer as one client would get it: texts per channel, SMS parts, reason,
        products; the reach and the estimated cost of an SMS campaign."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        offer = get_object_or_404(Offer, pk=pk)
        now = timezone.now()
        query = (request.GET.get("client") or "").strip()
        client_id: int | None = None
        problem = ""
        if request.GET.get("random"):
            client_id = selectors.random_member(offer=offer, at=now)
            if client_id is None:
                problem = gettext("The offer's audience is empty.")
        elif query:
            client_id = _find_client(query)
            if client_id is None:
                problem = gettext("No client found for “%s”.") % query
        proposal = None
        client = None
        control = False
        if client_id is not None:
            client = Client.objects.filter(pk=client_id).first()
            found = propose([client_id], offers=[offer], at=now, holdout=False)
            proposal = found[0] if found else None
            control = in_holdout(
                offer_id=offer.pk, client_id=client_id, holdout_percent=offer.holdout_percent
            )
            if proposal is None:
                in_audience = (
                    selectors.offer_audience(offer=offer, at=now).filter(pk=client_id).exists()
                )
                problem = (
                    gettext(
                        "The strategy found nothing for this client (no matching purchases, "
                        "or products out of stock, sensitive or below the margin)."
                    )
                    if in_audience
                    else gettext("The client is not in the offer's audience.")
                )
        sms = proposal.texts.get("sms") if proposal else None
        parts = sms.sms.parts if sms and sms.sms else 1
        estimate = selectors.offer_estimate(offer=offer, sms_parts=parts, at=now)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": gettext("Preview: %s") % offer.name,
            "offer": offer,
            "client": client,
            "query": query,
            "proposal": proposal,
            "control": control,
            "problem": problem,
            "estimate": estimate,
            "context_help": sorted(MESSAGE_CONTEXT),
            "reason_help": sorted(REASON_CONTEXT),
        }
        return TemplateResponse(request, "admin/offers/offer/preview.html", context)


def _find_client(query: str) -> int | None:
    if query.isdigit() and len(query) < 10:
        found = Client.objects.filter(pk=int(query)).values_list("pk", flat=True).first()
        if found:
            return found
    phone = normalize_phone(query)
    if phone:
        found = Client.objects.filter(phone=phone).values_list("pk", flat=True).first()
        if found:
            return found
    return Client.objects.filter(external_id=query).values_list("pk", flat=True).first()


class CrossSellRuleForm(forms.ModelForm):
    class Meta:
        model = CrossSellRule
        fields = (
            "name",
            "source_category",
            "source_product",
            "target_category",
            "target_product",
            "reason_text",
            "priority",
            "is_active",
        )
        help_texts = {"reason_text": REASON_HELP}

    def clean(self) -> dict[str, Any]:
        data = super().clean() or self.cleaned_data
        if bool(data.get("source_category")) == bool(data.get("source_product")):
            self.add_error(None, _("Give either the bought category or the bought product."))
        if bool(data.get("target_category")) == bool(data.get("target_product")):
            self.add_error(None, _("Give either the offered category or the offered product."))
        return data

    # ModelForm's step after the instance is built from the form (private, not in the stubs).
    def _post_clean(self) -> None:
        super()._post_clean()  # type: ignore[misc]
        _apply_errors(self, services.cross_sell_rule_check(rule=self.instance))


@admin.register(CrossSellRule)
class CrossSellRuleAdmin(admin.ModelAdmin):
    form = CrossSellRuleForm
    list_display = ("__str__", "reason_text", "priority", "is_active")
    list_filter = ("is_active",)
    list_editable = ("priority", "is_active")
    autocomplete_fields = ("source_category", "source_product", "target_category", "target_product")
    search_fields = ("name", "reason_text")


@admin.register(ProductAssociation)
class ProductAssociationAdmin(admin.ModelAdmin):
    list_display = (
        "antecedent",
        "consequent",
        "support_percent",
        "confidence_percent",
        "lift",
        "pair_clients",
        "status",
        "mined_at",
    )
    list_filter = ("status",)
    list_select_related = ("antecedent", "consequent")
    ordering = ("-lift",)
    actions = ("accept", "reject")
    fields = (
        "antecedent",
        "consequent",
        "pair_clients",
        "antecedent_clients",
        "consequent_clients",
        "total_clients",
        "support",
        "confidence",
        "lift",
        "status",
        "reason_text",
        "mined_at",
        "decided_by",
        "decided_at",
    )
    readonly_fields = tuple(f for f in fields if f not in ("reason_text",))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description=_("support, %"), ordering="support")
    def support_percent(self, obj: ProductAssociation) -> str:
        return f"{obj.support * 100:.2f}"

    @admin.display(description=_("confidence, %"), ordering="confidence")
    def confidence_percent(self, obj: ProductAssociation) -> str:
        return f"{obj.confidence * 100:.1f}"

    @admin.action(description=_("Accept: use for cross-sell"), permissions=["change"])
    def accept(self, request: HttpRequest, queryset: QuerySet[ProductAssociation]) -> None:
        count = services.association_decide(associations=queryset, accept=True, actor=request.user)
        self.message_user(request, gettext("Accepted: %d.") % count, messages.SUCCESS)

    @admin.action(description=_("Reject"), permissions=["change"])
    def reject(self, request: HttpRequest, queryset: QuerySet[ProductAssociation]) -> None:
        count = services.association_decide(associations=queryset, accept=False, actor=request.user)
        self.message_user(request, gettext("Rejected: %d.") % count, messages.SUCCESS)


class PromoPoolForm(forms.ModelForm):
    generate = forms.IntegerField(
        label=_("generate codes"),
        min_value=0,
        max_value=1_000_000,
        required=False,
        help_text=_("Add this many random codes (prefix + random part)."),
    )
    upload = forms.FileField(
        label=_("upload codes"),
        required=False,
        help_text=_("A text or CSV file, one code per line."),
    )

    class Meta:
        model = PromoPool
        fields = ("name", "prefix", "code_length", "description")


@admin.register(PromoPool)
class PromoPoolAdmin(admin.ModelAdmin):
    form = PromoPoolForm
    list_display = ("name", "prefix", "total", "assigned", "redeemed", "free", "redemption_rate")
    search_fields = ("name", "prefix")

    def get_queryset(self, request: HttpRequest) -> QuerySet[PromoPool]:
        return selectors.promo_pools_with_usage()

    @admin.display(description=_("codes"), ordering="total")
    def total(self, obj: Any) -> int:
        return int(obj.total)

    @admin.display(description=_("assigned"), ordering="assigned")
    def assigned(self, obj: Any) -> int:
        return int(obj.assigned)

    @admin.display(description=_("redeemed"), ordering="redeemed")
    def redeemed(self, obj: Any) -> int:
        return int(obj.redeemed)

    @admin.display(description=_("free"))
    def free(self, obj: Any) -> int:
        return int(obj.total) - int(obj.assigned)

    @admin.display(description=_("redeemed of assigned, %"))
    def redemption_rate(self, obj: Any) -> str:
        return f"{100 * obj.redeemed / obj.assigned:.1f}" if obj.assigned else "—"

    def save_model(self, request: HttpRequest, obj: PromoPool, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        count = form.cleaned_data.get("generate") or 0
        if count:
            created = services.promo_pool_generate(pool=obj, count=count)
            self.message_user(request, gettext("Generated %d codes.") % created, messages.SUCCESS)
        upload = form.cleaned_data.get("upload")
        if upload:
            lines = upload.read().decode("utf-8-sig", errors="replace").splitlines()
            codes = [line.split(",")[0].split(";")[0] for line in lines]
            result = services.promo_pool_upload(pool=obj, codes=codes)
            self.message_user(
                request,
                gettext("Uploaded %(created)d codes; %(dup)d duplicates, %(bad)d invalid skipped.")
                % {"created": result.created, "dup": result.duplicates, "bad": result.invalid},
                messages.SUCCESS,
            )


@admin.register(PromoCode)
class PromoCodeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("code", "pool", "client", "offer", "assigned_at", "redeemed_at")
    list_filter = ("pool",)
    list_select_related = ("pool", "client", "offer")
    search_fields = ("=code",)
    raw_id_fields = ("client", "redeemed_purchase")
    show_full_result_count = False
    ordering = ("-id",)
