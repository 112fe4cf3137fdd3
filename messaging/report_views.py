"""Report pages for marketers: the results dashboard, a campaign's, an offer's, a trigger's.

Thin views over ``messaging.reports`` (figures) and ``messaging.charts`` (SVG). Every page
exports as CSV or XLSX with ``?format=csv|xlsx``. Staff with ``messaging.view_results`` only
(marketers and superusers); operators get 403.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from messaging import charts
from messaging.models import Campaign, CampaignRun, TriggerScenario
from messaging.reports import (
    Report,
    campaign_report,
    dashboard,
    offer_report,
    overview_tables,
    report_tables,
    trigger_report,
)
from offers.models import Offer

PERMISSION = "messaging.view_results"
Tables = dict[str, list[list[Any]]]


def results_access(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Staff only (others go to the admin login), and with the results permission."""

    @wraps(view)
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.has_perm(PERMISSION):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return staff_member_required(checked)


# Pages ------------------------------------------------------------------------------------------


@require_GET
@results_access
def dashboard_view(request: HttpRequest) -> HttpResponse:
    days = _int(request.GET.get("days"), 90, low=1, high=730)
    overview = dashboard(days=days)
    if export := _export(request, overview_tables(overview), "results"):
        return export
    return render(
        request,
        "reports/dashboard.html",
        {
            **admin.site.each_context(request),
            "title": _("Campaign results"),
            "overview": overview,
            "days": days,
            "timeline_chart": _timeline_chart(overview.timeline),
            "sections": [
                (_("Campaigns"), overview.campaigns, "reports:campaign"),
                (_("Trigger scenarios"), overview.triggers, "reports:trigger"),
                (_("Offers"), overview.offers, "reports:offer"),
            ],
        },
    )


@require_GET
@results_access
def campaign_view(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = get_object_or_404(Campaign.objects.select_related("offer"), pk=pk)
    runs = list(campaign.runs.select_related("campaign").order_by("-started_at")[:30])
    run_id = _int(request.GET.get("run"), 0)
    run = next((r for r in runs if r.pk == run_id), None)
    if run_id and run is None:
        run = get_object_or_404(
            CampaignRun.objects.select_related("campaign"), pk=run_id, campaign=campaign
        )
    report = campaign_report(run or campaign)
    name = f"campaign-{campaign.pk}" + (f"-run-{run.pk}" if run else "")
    if export := _export(request, report_tables(report), name):
        return export
    return _render_report(
        request, report, kind=_("Campaign"), runs=runs, run=run, campaign=campaign
    )


@require_GET
@results_access
def offer_view(request: HttpRequest, pk: int) -> HttpResponse:
    offer = get_object_or_404(Offer, pk=pk)
    report = offer_report(offer)
    if export := _export(request, report_tables(report), f"offer-{offer.pk}"):
        return export
    return _render_report(request, report, kind=_("Offer"))


@require_GET
@results_access
def trigger_view(request: HttpRequest, pk: int) -> HttpResponse:
    scenario = get_object_or_404(TriggerScenario, pk=pk)
    report = trigger_report(scenario)
    if export := _export(request, report_tables(report), f"trigger-{scenario.pk}"):
        return export
    return _render_report(request, report, kind=_("Trigger scenario"))


@require_POST
@results_access
def recompute_view(request: HttpRequest, pk: int) -> HttpResponse:
    """Re-attribute a run's purchases now (in a task): after a late import of purchases."""
    from messaging.tasks.results import recompute_attribution

    campaign = get_object_or_404(Campaign, pk=pk)
    runs = campaign.runs.order_by("-started_at")
    run_id = _int(request.POST.get("run"), 0)
    run = runs.filter(pk=run_id).first() if run_id else runs.first()
    url = reverse("reports:campaign", args=[campaign.pk])
    if run is None:
        messages.warning(request, _("The campaign has not run yet."))
        return HttpResponseRedirect(url)
    transaction.on_commit(lambda: recompute_attribution.delay(run_id=run.pk))
    messages.success(
        request,
        _("Attribution of %(run)s is being recomputed; reload the page in a minute.")
        % {"run": run},
    )
    return HttpResponseRedirect(f"{url}?run={run.pk}")


# Rendering --------------------------------------------------------------------------------------


def _render_report(
    request: HttpRequest, report: Report, *, kind: str, **extra: Any
) -> HttpResponse:
    treated, variants = report.total.treated, report.variants
    rates = [
        (
            _("control group"),
            *_interval(report.total.control.conversions, report.total.control.messages),
        )
    ]
    rates.append((_("treated"), *_interval(treated.conversions, treated.messages)))
    rates += [(g.label, *_interval(g.treated.conversions, g.treated.messages)) for g in variants]
    return render(
        request,
        "reports/report.html",
        {
            **admin.site.each_context(request),
            "title": f"{kind}: {report.title}",
            "report": report,
            "kind": kind,
            "timeline_chart": _timeline_chart(report.timeline),
            "funnel_chart": charts.bar_chart(
                report.funnel, title=_("Funnel"), empty=_("No messages yet")
            ),
            "variant_chart": charts.rate_chart(
                rates,
                # xgettext:no-python-format
                title=_("Conversion rate with its 95% interval"),
                empty=_("No messages yet"),
            ),
            **extra,
        },
    )


def _timeline_chart(timeline: list[Any]) -> str:
    return charts.line_chart(
        [d.strftime("%d.%m") for d, _s, _c in timeline],
        [
            (_("sent"), [s for _d, s, _c in timeline]),
            (_("conversions"), [c for _d, _s, c in timeline]),
        ],
        title=_("Sends and conversions over time"),
        empty=_("No messages yet"),
    )


def _interval(conversions: int, n: int) -> tuple[float, float, float]:
    """A rate with its 95% (Wald) interval, for the chart's whiskers."""
    if not n:
        return 0.0, 0.0, 0.0
    rate = conversions / n
    half = 1.96 * math.sqrt(rate * (1 - rate) / n)
    return rate, max(0.0, rate - half), min(1.0, rate + half)


# Export -----------------------------------------------------------------------------------------


def _export(request: HttpRequest, tables: Tables, name: str) -> HttpResponse | None:
    fmt = request.GET.get("format")
    if fmt not in ("csv", "xlsx"):
        return None
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    filename = f"{slugify(name) or 'report'}-{stamp}.{fmt}"
    if fmt == "csv":
        response = HttpResponse(_csv(tables), content_type="text/csv; charset=utf-8")
    else:
        response = HttpResponse(
            _xlsx(tables),
            content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _csv(tables: Tables) -> bytes:
    """Tables one after another; a blank line and the table's name between them."""
    out = io.StringIO()
    writer = csv.writer(out)
    for i, (title, rows) in enumerate(tables.items()):
        if i:
            writer.writerow([])
            writer.writerow([title])
        writer.writerows(rows)
    # The BOM lets Excel open Cyrillic CSV as UTF-8.
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def _xlsx(tables: Tables) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    book.remove(book.active)
    for title, rows in tables.items():
        sheet = book.create_sheet(_sheet_title(title))
        for row in rows:
            sheet.append(row)
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        sheet.freeze_panes = "A2"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _sheet_title(title: str) -> str:
    for char in "[]:*?/\\":
        title = title.replace(char, " ")
    return title[:31] or "sheet"


def _int(value: str | None, default: int, *, low: int = 0, high: int = 2**31 - 1) -> int:
    try:
        number = int(value) if value else default
    except ValueError:
        return default
    return min(max(number, low), high)
