"""Admin for segments: a rule builder on the JSON field with a live preview, static lists.

Thin: validation is ``segments.rules``, writes are ``segments.services``, reads
``segments.selectors``. Custom pages go through ``get_urls`` and ``admin_site.admin_view``.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from crm.models import Brand, Category, Client, Interest, Product
from loyalty.models import Tier
from segments import services
from segments.catalog import FIELDS, catalog_as_json
from segments.models import Segment, SegmentKind, SegmentSizeHistory
from segments.rules import RulesError, explain_rules, iter_rules, validate_rules
from segments.selectors import rules_preview

LOOKUP_LIMIT = 20


class RulesBuilderWidget(forms.Textarea):
    """The JSON textarea (kept, for power users) plus the mouse builder drawn by
    ``static/segments/rule-builder.js`` from the catalog and reference lists."""

    template_name = "django/forms/widgets/textarea.html"

    def __init__(self, *args: Any, builder: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.builder = builder or {}

    class Media:
        css = {"all": ("segments/rule-builder.css",)}
        js = ("segments/rule-builder.js",)

    def format_value(self, value: Any) -> str:
        if value in (None, ""):
            return json.dumps({"match": "all", "rules": []})
        if isinstance(value, str):
            return value
        return json.dumps(value, ensure_ascii=False, indent=2)

    def render(self, name: str, value: Any, attrs: Any = None, renderer: Any = None) -> SafeString:
        attrs = {**(attrs or {}), "class": "segment-rules-json", "rows": 8}
        textarea = super().render(name, value, attrs, renderer)
        return mark_safe(  # a rendered template: escaped already
            render_to_string(
                "admin/segments/segment/rules_builder.html",
                {"textarea": textarea, "builder": self.builder, "field_id": attrs.get("id", "")},
            )
        )


class SegmentForm(forms.ModelForm):
    rules = forms.JSONField(required=False, label=_("rules"))

    class Meta:
        model = Segment
        fields = ("name", "description", "kind", "rules", "auto_refresh")

    def clean_rules(self) -> Any:
        rules = self.cleaned_data.get("rules")
        if self.cleaned_data.get("kind") == SegmentKind.STATIC:
            return {"match": "all", "rules": []}
        try:
            return validate_rules(rules, segment_id=self.instance.pk)
        except RulesError as exc:
            raise ValidationError(exc.messages) from exc


def _ref_options(rules: Any) -> dict[str, list[list[Any]]]:
    """Choices for the builder's pickers: small tables whole, products only those in use
    (others are found with the lookup endpoint). One query per table."""
    categories = [
        [c.pk, "— " * max(c.path.count("/") - 2, 0) + c.name]
        for c in Category.objects.order_by("path").only("pk", "name", "path")[:2000]
    ]
    used_products = {
        v
        for rule in iter_rules(rules)
        for key in ("value", "product")
        if (FIELDS.get(rule.get("field", "")) and key in rule)
        and (key == "product" or rule.get("field") == "bought_product")
        for v in (rule[key] if isinstance(rule[key], list) else [rule[key]])
        if isinstance(v, int)
    }
    cities = cache.get("segments:cities")
    if cities is None:
        cities = list(
            Client.objects.exclude(city="")
            .order_by("city")
            .values_list("city", flat=True)
            .distinct()[:300]
        )
        cache.set("segments:cities", cities, 600)
    return {
        "category": categories,
        "brand": [[b.pk, b.name] for b in Brand.objects.order_by("name").only("pk", "name")[:2000]],
        "tier": [[t.pk, t.name] for t in Tier.objects.order_by("rank")],
        "interest": [[i.pk, i.name] for i in Interest.objects.order_by("name")[:2000]],
        "segment": [[s.pk, s.name] for s in Segment.objects.order_by("name").only("pk", "name")],
        "product": [
            [p.pk, str(p)]
            for p in Product.objects.filter(pk__in=used_products).only("pk", "name", "sku")
        ],
        "city": [[c, c] for c in cities],
    }


def builder_labels() -> dict[str, str]:
    return {
        "not": gettext("NOT"),
        "match": gettext("match"),
        "conditions": gettext("of these conditions"),
        "add_rule": gettext("condition"),
        "add_group": gettext("group"),
        "remove_group": gettext("remove group"),
        "remove": gettext("remove"),
        "empty": gettext("No conditions: every client matches."),
        "unknown_field": gettext("Unknown field"),
        "field": gettext("field"),
        "operator": gettext("operator"),
        "days": gettext("days"),
        "from": gettext("from"),
        "to": gettext("to"),
        "and": gettext("and"),
        "add": gettext("add"),
        "search": gettext("search…"),
        "choose": gettext("choose…"),
        "nothing_found": gettext("nothing found"),
        "type_and_enter": gettext("type, then Enter"),
        "any_time": gettext("at any time"),
        "key": gettext("key"),
        "counting": gettext("counting…"),
        "preview_failed": gettext("preview failed"),
    }


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    form = SegmentForm
    list_display = ("name", "kind", "member_count", "refreshed_at", "auto_refresh", "updated_at")
    list_filter = ("kind", "auto_refresh")
    search_fields = ("name",)
    readonly_fields = ("explanation", "member_count", "refreshed_at", "size_history", "created_by")
    actions = ("refresh_selected",)
    change_form_template = "admin/segments/segment/change_form.html"

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        return (
            (None, {"fields": ("name", "description", "kind", "auto_refresh")}),
            (_("Who is in the segment"), {"fields": ("rules", "explanation")}),
            (
                _("Membership snapshot"),
                {"fields": ("member_count", "refreshed_at", "size_history", "created_by")},
            ),
        )

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        rules = obj.rules if obj is not None else {"match": "all", "rules": []}
        builder = {
            "catalog": catalog_as_json(),
            "refs": _ref_options(rules),
            "preview_url": reverse("admin:segments_segment_preview"),
            "lookup_url": reverse("admin:segments_segment_lookup"),
            "segment_id": obj.pk if obj is not None else None,
            "labels": builder_labels(),
        }
        form.base_fields["rules"].widget = RulesBuilderWidget(builder=builder)
        return form

    @admin.display(description=_("in plain words"))
    def explanation(self, obj: Segment) -> str:
        if obj.pk is None:
            return "—"
        if obj.kind == SegmentKind.STATIC:
            return gettext("A list of clients (uploaded or added from the client list).")
        return explain_rules(obj.rules)

    @admin.display(description=_("size history"))
    def size_history(self, obj: Segment) -> str:
        if obj.pk is None:
            return "—"
        rows = SegmentSizeHistory.objects.filter(segment=obj).order_by("-measured_at")[:20]
        if not rows:
            return gettext("No snapshot yet.")
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>+{}</td><td>−{}</td><td>{} ms</td></tr>",
            (
                (f"{r.measured_at:%Y-%m-%d %H:%M}", r.size, r.added, r.removed, r.duration_ms)
                for r in rows
            ),
        )
        return format_html(
            '<table class="segment-history"><thead><tr><th>{}</th><th>{}</th><th>{}</th>'
            "<th>{}</th><th>{}</th></tr></thead><tbody>{}</tbody></table>",
            gettext("when"),
            gettext("size"),
            gettext("added"),
            gettext("removed"),
            gettext("took"),
            body,
        )

    def save_model(self, request: HttpRequest, obj: Segment, form: Any, change: bool) -> None:
        services.segment_save(segment=obj, rules=form.cleaned_data.get("rules"), actor=request.user)

    @admin.action(description=_("Refresh membership snapshot now"), permissions=["change"])
    def refresh_selected(self, request: HttpRequest, queryset: QuerySet[Segment]) -> None:
        for segment in queryset.order_by("pk")[:20]:
            result = services.segment_refresh_membership(segment=segment)
            self.message_user(
                request,
                gettext("%(name)s: %(size)s members (+%(added)s, −%(removed)s).")
                % {
                    "name": segment.name,
                    "size": result.size,
                    "added": result.added,
                    "removed": result.removed,
                },
                messages.SUCCESS,
            )

    # Custom pages ---------------------------------------------------------------------------

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path("preview/", view(self.preview_view), name="segments_segment_preview"),
            path("lookup/", view(self.lookup_view), name="segments_segment_lookup"),
            path("<int:pk>/upload/", view(self.upload_view), name="segments_segment_upload"),
            *super().get_urls(),
        ]

    def preview_view(self, request: HttpRequest) -> HttpResponse:
        """POST {"rules": ..., "segment_id": ...} -> count, sample, explanation, or errors."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method != "POST":
            return JsonResponse({"detail": "POST rules as JSON"}, status=405)
        try:
            payload = json.loads(request.body or b"{}")
        except ValueError:
            return JsonResponse(
                {"ok": False, "errors": [{"path": "", "message": gettext("Invalid JSON.")}]},
                status=400,
            )
        segment_id = payload.get("segment_id") if isinstance(payload, dict) else None
        rules = payload.get("rules") if isinstance(payload, dict) else None
        try:
            preview = rules_preview(
                rules=rules,
                segment_id=segment_id if isinstance(segment_id, int) else None,
                sample_size=10,
            )
        except RulesError as exc:
            return JsonResponse(
                {"ok": False, "errors": [{"path": p, "message": m} for p, m in exc.errors]},
                status=400,
            )
        sample = [
            {
                **row,
                "url": reverse("admin:crm_client_change", args=[row["id"]]),
            }
            for row in preview.sample
        ]
        return JsonResponse(
            {
                "ok": True,
                "count": preview.count,
                "sample": sample,
                "explanation": preview.explanation,
            }
        )

    def lookup_view(self, request: HttpRequest) -> HttpResponse:
        """GET ?ref=product&q=text -> [{"id", "text"}] for the builder's product picker."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        term = (request.GET.get("q") or "").strip()
        ref = request.GET.get("ref", "product")
        if ref != "product" or len(term) < 2:
            return JsonResponse({"results": []})
        products = Product.objects.filter(Q(sku__iexact=term) | Q(name__icontains=term)).order_by(
            "name"
        )
        return JsonResponse(
            {
                "results": [
                    {"id": p.pk, "text": str(p)}
                    for p in products.only("pk", "name", "sku")[:LOOKUP_LIMIT]
                ]
            }
        )

    def upload_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        segment = get_object_or_404(Segment, pk=pk)
        if not self.has_change_permission(request, segment):
            raise PermissionDenied
        form = StaticUploadForm(request.POST or None, request.FILES or None)
        if segment.kind != SegmentKind.STATIC:
            messages.error(request, gettext("Only static segments take an uploaded list."))
            return HttpResponseRedirect(reverse("admin:segments_segment_change", args=[pk]))
        if request.method == "POST" and form.is_valid():
            raw = form.cleaned_data["file"].read()
            text = raw.decode("utf-8-sig", errors="replace")
            result = services.segment_import_static(
                segment=segment, text=text, identifier=form.cleaned_data["identifier"]
            )
            messages.success(
                request,
                gettext(
                    "%(lines)s lines: %(matched)s clients found, %(added)s added, "
                    "%(missing)s not found."
                )
                % {
                    "lines": result.lines,
                    "matched": result.matched,
                    "added": result.added,
                    "missing": len(result.not_found),
                },
            )
            if result.not_found:
                messages.warning(
                    request,
                    gettext("Not found: %(values)s") % {"values": ", ".join(result.not_found[:20])},
                )
            return HttpResponseRedirect(reverse("admin:segments_segment_change", args=[pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": segment,
            "title": gettext("Upload a client list to %(name)s") % {"name": segment.name},
            "form": form,
        }
        return TemplateResponse(request, "admin/segments/segment/upload.html", context)


class StaticUploadForm(forms.Form):
    file = forms.FileField(
        label=_("file"),
        help_text=_(
            "One phone, e-mail or external ID per line, or a CSV whose first column is one."
        ),
    )
    identifier = forms.ChoiceField(
        label=_("the file lists"),
        choices=[
            ("auto", _("detect: phones, e-mails or external IDs")),
            ("phone", _("phones")),
            ("email", _("e-mails")),
            ("external_id", _("external IDs")),
        ],
        initial="auto",
    )


# The "add selected to segment" action of the client changelist -----------------------------------


class AddToSegmentForm(forms.Form):
    segment = forms.ModelChoiceField(
        label=_("static segment"),
        queryset=Segment.objects.filter(kind=SegmentKind.STATIC),
        required=False,
    )
    new_name = forms.CharField(
        label=_("or a new static segment named"), max_length=150, required=False
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not data.get("segment") and not data.get("new_name"):
            raise ValidationError(_("Choose a segment or name a new one."))
        if data.get("new_name") and Segment.objects.filter(name=data["new_name"]).exists():
            raise ValidationError(_("A segment with this name already exists."))
        return data


@admin.action(description=_("Add selected clients to a static segment"), permissions=["view"])
def add_selected_to_segment(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Client]
) -> HttpResponse | None:
    """Asks which static segment (or a new one), then adds the selected clients in one
    INSERT ... SELECT, also when "select all" spans every page."""
    if not request.user.has_perm("segments.change_segment"):
        modeladmin.message_user(request, gettext("You may not change segments."), messages.ERROR)
        return None
    form = AddToSegmentForm(request.POST if "apply" in request.POST else None)
    if "apply" in request.POST and form.is_valid():
        segment = form.cleaned_data["segment"]
        if segment is None:
            segment = services.segment_save(
                segment=Segment(name=form.cleaned_data["new_name"], kind=SegmentKind.STATIC),
                actor=request.user,
            )
        added = services.segment_add_clients(segment=segment, clients=queryset)
        modeladmin.message_user(
            request,
            gettext("%(added)s clients added to %(name)s; it has %(size)s members.")
            % {"added": added, "name": segment.name, "size": segment.member_count},
            messages.SUCCESS,
        )
        return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "opts": modeladmin.model._meta,
        "title": gettext("Add clients to a segment"),
        "form": form,
        "queryset": queryset[:10],
        "select_across": request.POST.get("select_across", "0"),
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "action": "add_selected_to_segment",
        "query_string": mark_safe(request.GET.urlencode()),  # noqa: S308 - urlencoded
    }
    return TemplateResponse(request, "admin/segments/add_to_segment.html", context)
