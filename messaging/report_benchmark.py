"""Results benchmark: ``python manage.py benchmark reports --clients 50000``.

Over the demo clients it writes, set-based (one INSERT ... SELECT per table), a campaign run of
200,000 messages with A/B variants, a 10% control group and a purchase for every client within
the window (a third of them of the offer's category); then it attributes the run's purchases and
times the campaign report (and the campaign page, which adds the charts and the template)
against the target of 2 seconds. Re-running replaces the previous benchmark run.

With fewer clients than messages a client gets several messages of the run (a real run writes
one), so the figures are about speed, not about a believable uplift.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from django.db import connection, transaction
from django.db.models import Model
from django.utils import timezone

from crm.benchmarking import BenchmarkContext, BenchmarkFailed, register

MESSAGES = 200_000
CONTROL_SHARE = 10  # one control record per ten messages
REPORT_TARGET_MS = 2000.0
NAME = "Benchmark: results report"
KEY = "bench-results"


@register("reports", help="Campaign report over a 200k-message run with attribution (target 2 s)")
def campaign_report_benchmark(ctx: BenchmarkContext) -> None:
    from django.contrib.auth import get_user_model
    from django.test import Client as HttpClient
    from django.urls import reverse

    from messaging.reports import campaign_report
    from messaging.services.attribution import attribution_recompute

    # The command has seeded (or reused) the demo data: ``needs_demo_data`` is on.
    now = timezone.now()
    started = now - dt.timedelta(days=10)

    t0 = time.perf_counter()
    run, counts = _setup(started, now)
    ctx.record("setup", "rows_written", sum(counts.values()), "rows")
    ctx.record("setup", "seconds", time.perf_counter() - t0, "s")
    ctx.note(f"run #{run.pk}: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))

    t0 = time.perf_counter()
    result = attribution_recompute(run=run, now=now)
    ctx.record("attribution", "seconds", time.perf_counter() - t0, "s")
    ctx.record("attribution", "attributed", result.created, "purchases")
    if not result.created:
        raise BenchmarkFailed("no purchase was attributed to the benchmark run")
    _analyze()

    report = campaign_report(run)
    if report.total.treated.messages != counts["messages"]:
        raise BenchmarkFailed(
            f"the report counts {report.total.treated.messages} messages, "
            f"{counts['messages']} were written"
        )
    ctx.note(report.total.uplift.text)
    ctx.record("campaign_report", "queries", ctx.count_queries(lambda: campaign_report(run)), "")
    repeat = min(ctx.repeat, 5)
    timing = ctx.time_calls(lambda: campaign_report(run), repeat=repeat)
    ctx.record("campaign_report", "p50", timing.p50_ms, "ms", target=REPORT_TARGET_MS)
    ctx.record("campaign_report", "max", max(timing.samples_ms), "ms", target=REPORT_TARGET_MS)
    # The campaign page opens on all runs together (distinct recipients counted, not implied).
    timing = ctx.time_calls(lambda: campaign_report(run.campaign), repeat=repeat)
    ctx.record("campaign_report_all_runs", "p50", timing.p50_ms, "ms", target=REPORT_TARGET_MS)

    user_model = get_user_model()
    user, _ = user_model.objects.get_or_create(
        username="benchmark-results", defaults={"is_staff": True, "is_superuser": True}
    )
    http = HttpClient()
    http.force_login(user)
    url = reverse("reports:campaign", args=[run.campaign_id])

    def page() -> None:
        response = http.get(url, {"run": run.pk})
        if response.status_code != 200:
            raise BenchmarkFailed(f"GET {url} returned {response.status_code}")

    timing = ctx.time_calls(page, repeat=repeat)
    ctx.record("campaign_page", "p50", timing.p50_ms, "ms", target=REPORT_TARGET_MS)


# Set-up -----------------------------------------------------------------------------------------


def _setup(started: dt.datetime, now: dt.datetime) -> tuple[Any, dict[str, int]]:
    from crm.models import Client, Product, Purchase, PurchaseItem
    from messaging.models import Campaign, CampaignRun, Message, RunStatus
    from offers.models import Offer, OfferVariant

    clients = Client.objects.count()
    if not clients:
        raise BenchmarkFailed("no clients: seed the demo data first")
    category_id = (
        Product.objects.filter(active=True).values("category_id").order_by("category_id").first()
    )
    if category_id is None:
        raise BenchmarkFailed("no products in the catalog")
    category = category_id["category_id"]
    in_offer = Product.objects.filter(category_id=category).values_list("pk", flat=True).first()
    other = Product.objects.exclude(category_id=category).values_list("pk", flat=True).first()

    with transaction.atomic():
        _clean()
        offer, _ = Offer.objects.update_or_create(
            name=NAME,
            defaults={
                "status": "active",
                "starts_at": started - dt.timedelta(days=1),
                "ends_at": now + dt.timedelta(days=30),
                "strategy": "fixed",
                "fixed_category_id": category,
                "holdout_percent": 10,
            },
        )
        variants = [
            OfferVariant.objects.get_or_create(offer=offer, name=name, defaults={"sms_text": "x"})[
                0
            ]
            for name in ("A", "B")
        ]
        campaign, _ = Campaign.objects.update_or_create(
            name=NAME, defaults={"offer": offer, "channels": ["sms", "email"]}
        )
        run = CampaignRun.objects.create(
            campaign=campaign, started_at=started, status=RunStatus.PLANNED
        )
        control = MESSAGES // CONTROL_SHARE
        s = "CAST(s.i AS INTEGER)"
        # Sends over the first two days; a mix of outcomes; every 25th clicked; A/B by parity.
        sent_at = _plus_hours(":started", f"({s} %% 48)")
        message_exprs = {
            "client_id": "c.id",
            "channel": f"CASE WHEN {s} %% 20 = 0 THEN 'email' ELSE 'sms' END",
            "run_id": ":run",
            "offer_id": ":offer",
            "variant_id": f"CASE WHEN {s} %% 2 = 0 THEN :variant_a ELSE :variant_b END",
            "recipient": "'+79990000000'",
            "text": "'benchmark'",
            "scheduled_for": ":started",
            "status": f"CASE WHEN {s} %% 10 < 7 THEN 'delivered' WHEN {s} %% 10 = 7 THEN 'sent' "
            "WHEN {s} %% 10 = 8 THEN 'failed' ELSE 'undelivered' END".replace("{s}", s),
            "sent_at": f"CASE WHEN {s} %% 10 = 8 THEN NULL ELSE {sent_at} END",
            "delivered_at": f"CASE WHEN {s} %% 10 < 7 THEN {sent_at} ELSE NULL END",
            "clicked_at": f"CASE WHEN {s} %% 25 = 0 THEN {sent_at} ELSE NULL END",
            "idempotency_key": _concat(f"'{KEY}:'", ":run", "':'", "s.i"),
            "created_at": ":started",
            "updated_at": ":started",
        }
        params = {
            "started": started,
            "run": run.pk,
            "offer": offer.pk,
            "variant_a": variants[0].pk,
            "variant_b": variants[1].pk,
            "clients": clients,
        }
        n_messages = _insert(Message, message_exprs, _series(MESSAGES, f"{s} %% :clients"), params)
        control_exprs = {
            **message_exprs,
            "variant_id": "NULL",
            "recipient": "''",
            "text": "''",
            "status": "'control'",
            "sent_at": "NULL",
            "delivered_at": "NULL",
            "clicked_at": "NULL",
            "idempotency_key": _concat(f"'{KEY}:'", ":run", "':c'", "s.i"),
        }
        # Control records go to clients offset by half the base, as a holdout would.
        n_control = _insert(
            Message, control_exprs, _series(control, f"({s} + :clients / 2) %% :clients"), params
        )
        # One purchase per client within the window: a third of the offer's category.
        purchase_exprs = {
            "external_id": _concat(f"'{KEY}:'", "c.id"),
            "client_id": "c.id",
            "purchased_at": _plus_hours(":started", f"(48 + {s} %% 96)"),
            "channel": "'store'",
            "store": "''",
            "total": "1000",
            "created_at": ":started",
            "updated_at": ":started",
        }
        n_purchases = _insert(Purchase, purchase_exprs, _series(clients, s), params)
        item_exprs = {
            "purchase_id": "p.id",
            # Not by parity: variants go by parity, and conversions should not.
            "product_id": "CASE WHEN p.client_id %% 3 = 0 THEN :in_offer ELSE :other END",
            "quantity": "1",
            "unit_price": "1000",
            "discount": "CASE WHEN p.client_id %% 4 = 0 THEN 100 ELSE 0 END",
            "client_id": "p.client_id",
            "purchased_at": "p.purchased_at",
        }
        n_items = _insert(
            PurchaseItem,
            item_exprs,
            f"FROM {_t(Purchase)} p WHERE p.external_id LIKE :like",
            {**params, "in_offer": in_offer, "other": other or in_offer, "like": f"{KEY}:%"},
        )
    return run, {
        "messages": n_messages,
        "control": n_control,
        "purchases": n_purchases,
        "items": n_items,
    }


def _clean() -> None:
    """Drop the previous benchmark run, its attributions and its purchases (plain SQL: the ORM
    would collect 200k objects to cascade)."""
    from crm.models import Purchase, PurchaseItem
    from messaging.models import Attribution, Campaign, CampaignRun, Message

    like = f"{KEY}:%"
    runs = (
        f"SELECT r.id FROM {_t(CampaignRun)} r JOIN {_t(Campaign)} k ON k.id = r.campaign_id "
        "WHERE k.name = %s"
    )
    purchases = f"SELECT id FROM {_t(Purchase)} WHERE external_id LIKE %s"
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {_t(Attribution)} WHERE purchase_id IN ({purchases})"
            f" OR message_id IN (SELECT id FROM {_t(Message)} WHERE run_id IN ({runs}))",
            [like, NAME],
        )
        cursor.execute(f"DELETE FROM {_t(PurchaseItem)} WHERE purchase_id IN ({purchases})", [like])
        cursor.execute(f"DELETE FROM {_t(Purchase)} WHERE external_id LIKE %s", [like])
        cursor.execute(f"DELETE FROM {_t(Message)} WHERE run_id IN ({runs})", [NAME])
        cursor.execute(f"DELETE FROM {_t(CampaignRun)} WHERE id IN ({runs})", [NAME])


def _insert(model: type[Model], exprs: dict[str, str], source: str, params: dict[str, Any]) -> int:
    """INSERT INTO model (every column) SELECT ...: the given expressions, and each other
    column's default as a parameter (so a column added later does not break the benchmark)."""
    columns, values, defaults = [], [], {}
    for f in model._meta.concrete_fields:
        if f.primary_key:
            continue
        columns.append(connection.ops.quote_name(str(f.column)))
        if f.attname in exprs:
            values.append(exprs[f.attname])
        else:
            name = f"d_{f.column}"
            default = f.get_default() if f.has_default() or not f.null else None
            defaults[name] = f.get_db_prep_save(default, connection)
            values.append(f":{name}")
    sql = f"INSERT INTO {_t(model)} ({', '.join(columns)}) SELECT {', '.join(values)} {source}"
    with connection.cursor() as cursor:
        cursor.execute(*_named(sql, {**params, **defaults}))
        return cursor.rowcount


def _named(sql: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``:name`` placeholders to the driver's ``%(name)s`` (datetimes adapted for SQLite)."""
    from crm.db.raw import db_datetime

    adapted = {k: db_datetime(v) if isinstance(v, dt.datetime) else v for k, v in params.items()}
    for name in sorted(adapted, key=len, reverse=True):
        sql = sql.replace(f":{name}", f"%({name})s")
    return sql, adapted


def _series(n: int, client_index: str) -> str:
    """Rows s.i = 0..n-1, each joined to the client numbered ``client_index`` (by id order)."""
    return f"""
    FROM (
        WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < {n - 1})
        SELECT i FROM seq
    ) s
    JOIN (SELECT id, ROW_NUMBER() OVER (ORDER BY id) - 1 AS k FROM crm_client) c
        ON c.k = {client_index}
    """


def _plus_hours(start: str, hours: str) -> str:
    if connection.vendor == "postgresql":
        return f"(CAST({start} AS timestamptz) + {hours} * INTERVAL '1 hour')"
    return f"strftime('%%Y-%%m-%%d %%H:%%M:%%f', {start}, '+' || {hours} || ' hours')"


def _concat(*parts: str) -> str:
    return " || ".join(f"CAST({p} AS TEXT)" for p in parts)


def _t(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _analyze() -> None:
    """Fresh planner statistics after 200k rows, as autovacuum would give them in a while."""
    if connection.vendor != "postgresql":
        return
    from messaging.models import Attribution, Message

    with connection.cursor() as cursor:
        for model in (Message, Attribution):
            cursor.execute(f"ANALYZE {_t(model)}")
