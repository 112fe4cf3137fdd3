"""Benchmarks of the client domain (run with ``python manage.py benchmark NAME``)."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.http import HttpResponse, HttpResponseBase
from django.test import Client as HttpClient
from django.urls import reverse

from crm.benchmarking import BenchmarkContext, BenchmarkFailed, register

# p95 of one admin page. Meant at 1,000,000 clients; smaller data sets keep the same bar.
ADMIN_P95_TARGET_MS = 300.0


@dataclass(frozen=True)
class PageCase:
    case: str
    url: str
    params: dict[str, str]
    expect: str = ""  # text the page must contain (proves a search found its row)


def spoken_phone(e164: str) -> str:
    """'+79123456789' as people type it: '8 (912) 345-67-89'."""
    n = e164.removeprefix("+7")
    return f"8 ({n[:3]}) {n[3:6]}-{n[6:8]}-{n[8:]}"


@register("admin", help="Admin changelists: clients, purchases, points ledger (p50/p95, queries)")
def admin_changelists(ctx: BenchmarkContext) -> None:
    from crm.models import Purchase

    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    http = HttpClient()
    http.force_login(user)

    # A real client with purchases, from the middle of the table.
    middle = Purchase.objects.order_by("-id").values_list("id", flat=True).first() or 0
    purchase = (
        Purchase.objects.filter(id__gte=middle // 2).order_by("id").select_related("client").first()
    )
    if purchase is None or not purchase.client.phone:
        raise BenchmarkFailed("no purchase with a client phone to search for; seed demo data")
    client = purchase.client
    latest = Purchase.objects.filter(client=client).order_by("-purchased_at", "-id").first()
    assert latest is not None
    phone = spoken_phone(client.phone.as_e164)
    city = client.city or "Москва"

    clients_url = reverse("admin:crm_client_changelist")
    purchases_url = reverse("admin:crm_purchase_changelist")
    ledger_url = reverse("admin:loyalty_pointsentry_changelist")
    cases = [
        PageCase("client_changelist", clients_url, {}),
        PageCase(
            "client_search_phone",
            clients_url,
            {"q": phone},
            reverse("admin:crm_client_change", args=[client.pk]),
        ),
        PageCase("client_filter_gender", clients_url, {"gender__exact": "f"}),
        PageCase("client_filter_city", clients_url, {"city": city}),
        PageCase("purchase_changelist", purchases_url, {}),
        PageCase(
            "purchase_search_phone",
            purchases_url,
            {"q": phone},
            reverse("admin:crm_purchase_change", args=[latest.pk]),
        ),
        PageCase("purchase_filter_channel", purchases_url, {"channel__exact": "online"}),
        PageCase("ledger_changelist", ledger_url, {}),
        PageCase("ledger_filter_kind", ledger_url, {"kind__exact": "redeem"}),
    ]
    ctx.note(f"searching for client #{client.pk} as {phone!r}, {ctx.repeat} requests per page")

    for case in cases:

        def get(case: PageCase = case) -> HttpResponseBase:
            return http.get(case.url, case.params)

        warm = get()  # warm-up (caches, plans), also the correctness check
        _check(case, warm)
        queries = ctx.count_queries(get)
        timing = ctx.time_calls(get)
        ctx.record(case.case, "p50", timing.p50_ms, "ms")
        ctx.record(case.case, "p95", timing.p95_ms, "ms", target=ADMIN_P95_TARGET_MS)
        ctx.record(case.case, "queries", queries, "queries")


def _check(case: PageCase, response: HttpResponseBase) -> None:
    if response.status_code != 200:
        where = response.get("Location", "")
        hint = " (the admin refused a filter parameter: ?e=1)" if "e=1" in where else ""
        raise BenchmarkFailed(
            f"{case.case}: GET {case.url} {case.params} returned {response.status_code}"
            f"{' -> ' + where if where else ''}{hint}"
        )
    content = response.content if isinstance(response, HttpResponse) else b""
    if case.expect and case.expect not in content.decode():
        raise BenchmarkFailed(f"{case.case}: the page does not link {case.expect}")


from crm import import_benchmark  # noqa: E402,F401 - registers "import"
from crm.card import benchmark as card_benchmark  # noqa: E402,F401 - registers "card"
