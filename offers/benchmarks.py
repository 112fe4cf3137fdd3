"""Offer benchmark: ``python manage.py benchmark offers --clients 1000000``.

Over the demo data it sets up the demo offers (``offers/demo.py``): a replenishment offer for the
"cat owners" segment (about 22% of clients: some 220k at a million) and a cross-sell offer over
the same segment, both active on SMS with A/B variants and a 10% holdout. It then walks the
segment in batches of 5,000 clients and asks the engine for proposals with rendered SMS texts,
reusing one catalog snapshot, through ``propose_batches`` as campaign planning does (two
batches in flight on PostgreSQL: one's queries overlap another's Python); it records proposals
per second (target 5,000), clients per second, and the queries per batch (the same for a small
and a full batch, each counted on its own). Then it mines
associations over every purchase item and records items per second against the target of 10M
items in five minutes.
"""

from __future__ import annotations

import time
from typing import Any

from django.utils import timezone

from crm.benchmarking import BenchmarkContext, BenchmarkFailed, ensure_demo_data, register

BATCH = 5000
PROPOSALS_PER_S_TARGET = 5000.0
MINING_ITEMS_PER_S_TARGET = 10_000_000 / 300


@register("offers", help="Offer engine proposals/s over a cat-owner segment; association mining")
def offers_benchmark(ctx: BenchmarkContext) -> None:
    from crm.models import PurchaseItem
    from offers.catalog import Catalog
    from offers.demo import offers_demo_setup
    from offers.engine import PARALLEL_BATCHES, propose, propose_batches
    from offers.services import associations_mine
    from segments.selectors import segment_clients

    ensure_demo_data(ctx)
    now = timezone.now()
    demo = offers_demo_setup(codes=0, now=now)
    offers = [demo.replenish, demo.cross_sell]
    demo.cross_sell.segments.set([demo.segment])

    ids = list(
        segment_clients(segment=demo.segment, now=now).order_by("pk").values_list("pk", flat=True)
    )
    if not ids:
        raise BenchmarkFailed("the cat-owner segment is empty")
    ctx.note(f"segment of {len(ids):,} clients, batches of {BATCH:,}")
    ctx.record("propose", "segment_clients", len(ids), "clients")

    started = time.perf_counter()
    catalog = Catalog.load(at=now)
    catalog_ms = (time.perf_counter() - started) * 1000

    options: dict[str, Any] = {"offers": offers, "channel": "sms", "at": now, "catalog": catalog}
    small_queries = ctx.count_queries(lambda: propose(ids[:50], **options))
    full_queries = ctx.count_queries(lambda: propose(ids[:BATCH], **options))
    batches = [ids[start : start + BATCH] for start in range(0, len(ids), BATCH)]
    ctx.note(f"{len(batches)} batches, up to {PARALLEL_BATCHES} in flight")
    proposals = 0
    control = 0
    started = time.perf_counter()
    cpu_started = time.process_time()
    for number, result in enumerate(propose_batches(batches, **options)):
        proposals += sum(1 for p in result if not p.is_control)
        control += sum(1 for p in result if p.is_control)
        if number % 10 == 0:
            ctx.note(f"{min((number + 1) * BATCH, len(ids)):,} clients, {proposals:,} proposals")
    seconds = time.perf_counter() - started + catalog_ms / 1000
    cpu = time.process_time() - cpu_started
    total = proposals + control
    ctx.record("propose", "proposals", proposals, "proposals")
    ctx.record("propose", "control_group", control, "clients")
    ctx.record("propose", "seconds", seconds, "s")
    ctx.record(
        "propose",
        "proposals_per_s",
        total / seconds,
        "proposals/s",
        target=PROPOSALS_PER_S_TARGET,
        higher_is_better=True,
    )
    ctx.record("propose", "clients_per_s", len(ids) / seconds, "clients/s")
    # Each client is evaluated for each offer; a decision may be "nothing fits" (not due yet).
    ctx.record("propose", "decisions_per_s", len(ids) * len(offers) / seconds, "decisions/s")
    ctx.record("propose", "cpu_seconds", cpu, "s")
    ctx.record("propose", "catalog_load", catalog_ms, "ms")
    ctx.record(
        "propose",
        "queries_per_batch",
        full_queries,
        "queries",
        ok=full_queries == small_queries,
    )
    ctx.record("propose", "queries_50_clients", small_queries, "queries")

    items = PurchaseItem.objects.count()
    started = time.perf_counter()
    mined = associations_mine(lookback_days=3650, at=now)
    mining_s = time.perf_counter() - started
    ctx.record("mining", "purchase_items", items, "items")
    ctx.record("mining", "seconds", mining_s, "s")
    ctx.record(
        "mining",
        "items_per_s",
        items / max(mining_s, 1e-6),
        "items/s",
        target=round(MINING_ITEMS_PER_S_TARGET, 2),
        higher_is_better=True,
    )
    ctx.record("mining", "associations", mined.pairs, "pairs")
