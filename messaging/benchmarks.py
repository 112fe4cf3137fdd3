"""Campaign benchmark: ``python manage.py benchmark campaign --clients 1000000``.

Over the demo data it builds a static segment of every fifth client (200k at a million), then
plans two runs from run start to the last outbox row: a plain-text SMS campaign (policy and
outbox alone) and the demo cat-food offer over the same audience (the offer engine's proposals
as well). Target: 5,000 planned messages per second on one process, with the same number of
queries for every batch. With the offer, a message is planned only for the clients the offer
fits (cat owners with a refill due: under 3% of this audience), so its messages per second say
how many fit, not how fast planning is; there the target applies to clients per second, the
pace at which the audience is decided on. Then it dispatches the plain run's messages through
the locmem backend (target 2,000 messages per second). A contact policy whose windows never
close is active for the measurement, so the figures do not depend on the hour it runs at.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone

from crm.benchmarking import BenchmarkContext, BenchmarkFailed, ensure_demo_data, register

PLANNED_PER_S_TARGET = 5000.0
DISPATCHED_PER_S_TARGET = 2000.0
SEGMENT_NAME = "benchmark: every fifth client"
POLICY_NAME = "benchmark: always open"


@register("campaign", help="Campaign planning (messages/s) and dispatch through locmem")
def campaign_benchmark(ctx: BenchmarkContext) -> None:
    from crm.models import Client
    from messaging.models import Campaign, ChannelRule, ContactPolicy, Message
    from segments.models import Segment, SegmentKind, SegmentMember

    ensure_demo_data(ctx)
    now = timezone.now()
    segment, _created = Segment.objects.get_or_create(
        name=SEGMENT_NAME, defaults={"kind": SegmentKind.STATIC}
    )
    if not SegmentMember.objects.filter(segment=segment).exists():
        _fill_segment(segment, Client)
    size = SegmentMember.objects.filter(segment=segment).count()
    ctx.note(f"audience: {size:,} clients (every fifth)")

    previous = list(ContactPolicy.objects.filter(is_active=True).values_list("pk", flat=True))
    ContactPolicy.objects.filter(pk__in=previous).update(is_active=False)
    policy, _created = ContactPolicy.objects.update_or_create(
        name=POLICY_NAME,
        defaults={"is_active": True, "min_gap_hours": 0, "total_limit": 100},
    )
    for channel in ("sms", "email", "call"):
        ChannelRule.objects.update_or_create(
            policy=policy,
            channel=channel,
            defaults={
                "limit": 100,
                "weekday_start": dt.time(0, 0),
                "weekday_end": dt.time(23, 59, 59),
                "weekend_start": dt.time(0, 0),
                "weekend_end": dt.time(23, 59, 59),
            },
        )
    try:
        plain, _created = Campaign.objects.update_or_create(
            name="benchmark: plain SMS",
            defaults={
                "segment": segment,
                "offer": None,
                "channels": ["sms"],
                "sms_text": "{{ client.first_name }}, в субботу скидка 10% на всё. Ждём вас!",
                "throttle_per_second": 0,  # measure the dispatcher, not the campaign's pace
            },
        )
        run = _plan(ctx, "plain_campaign", plain, now)
        _dispatch(ctx, run, now)
        offer = _demo_offer(now)
        if offer is None:
            ctx.note("offers_demo data missing: the offer campaign is skipped")
        else:
            with_offer, _created = Campaign.objects.update_or_create(
                name="benchmark: cat-food offer",
                defaults={
                    "segment": segment,
                    "offer": offer,
                    "channels": ["sms"],
                    "throttle_per_second": 0,
                },
            )
            _plan(ctx, "offer_campaign", with_offer, now, per_client=True)
    finally:
        ContactPolicy.objects.filter(pk=policy.pk).update(is_active=False)
        ContactPolicy.objects.filter(pk__in=previous[:1]).update(is_active=True)
        Message.objects.filter(run__campaign__name__startswith="benchmark: ").delete()


def _fill_segment(segment: Any, client_model: Any) -> None:
    from segments.models import SegmentMember

    table = SegmentMember._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (segment_id, client_id, added_at) "
            f"SELECT %s, id, %s FROM {client_model._meta.db_table} WHERE id %% 5 = 0",
            [segment.pk, timezone.now()],
        )


def _demo_offer(now: dt.datetime) -> Any:
    from offers.demo import offers_demo_setup
    from offers.services import promo_pool_generate

    try:
        demo = offers_demo_setup(codes=0, now=now)
    except Exception:  # noqa: BLE001 - the offer case is optional
        return None
    offer = demo.replenish
    if offer.promo_pool is not None:
        # One free single-use code per audience member, so "no code left" excludes nobody.
        free = offer.promo_pool.codes.filter(client__isnull=True).count()
        if free < 25_000:
            promo_pool_generate(pool=offer.promo_pool, count=25_000 - free)
    return offer


def _plan(
    ctx: BenchmarkContext, case: str, campaign: Any, now: dt.datetime, *, per_client: bool = False
) -> Any:
    from messaging.models import CampaignRun, Message
    from messaging.services.campaigns import campaign_run_plan

    Message.objects.filter(run__campaign=campaign).delete()
    run = CampaignRun.objects.create(campaign=campaign, started_at=now)
    batches: list[int] = []

    def count_batches(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if "UPDATE" in sql and '"messaging_campaignrun"' in sql and '"processed"' in sql:
            batches.append(1)
        return execute(sql, params, many, context)

    started = time.perf_counter()
    cpu = time.process_time()
    with CaptureQueriesContext(connection) as queries, connection.execute_wrapper(count_batches):
        run = campaign_run_plan(run=run, now=now)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu
    if run.status != "planned":
        raise BenchmarkFailed(f"{case}: run ended {run.status}: {run.error}")
    ctx.note(
        f"{case}: {run.planned:,} planned, {run.control:,} control, excluded {run.excluded} "
        f"in {seconds:.1f} s ({cpu_seconds:.1f} s CPU in this process)"
    )
    ctx.record(case, "audience", run.audience, "clients")
    ctx.record(case, "planned", run.planned, "messages")
    ctx.record(
        case,
        "planned_per_s",
        round(run.planned / seconds, 1),
        "messages/s",
        target=None if per_client else PLANNED_PER_S_TARGET,
        higher_is_better=True,
    )
    ctx.record(
        case,
        "clients_per_s",
        round(run.processed / seconds, 1),
        "clients/s",
        target=PLANNED_PER_S_TARGET,
        higher_is_better=True,
    )
    ctx.record(case, "seconds", round(seconds, 2), "s")
    per_batch = (len(queries.captured_queries) - 12) / max(len(batches), 1)
    ctx.record(case, "queries_per_batch", round(per_batch, 1), "queries")
    return run


def _dispatch(ctx: BenchmarkContext, run: Any, now: dt.datetime) -> None:
    from django.db.models import Max

    from messaging.backends import locmem
    from messaging.models import Message
    from messaging.services.dispatch import dispatch_due

    locmem.reset()
    with override_settings(
        SMS_BACKEND="messaging.backends.locmem.LocmemBackend",
        SMS_BACKEND_OPTIONS={},
        MESSAGING_DISPATCH_CHUNK=1000,
    ):
        # Placed in the clients' preferred parts of the day: dispatch as of the last of them.
        last = Message.objects.filter(run=run).aggregate(last=Max("scheduled_for"))["last"]
        started = time.perf_counter()
        result = dispatch_due(now=max(last or now, now) + dt.timedelta(seconds=1))
        seconds = time.perf_counter() - started
    sent = result.counts.get("sent", 0)
    ctx.note(f"dispatch: {dict(result.counts)} in {seconds:.1f} s")
    if sent != run.planned:
        raise BenchmarkFailed(f"dispatch sent {sent:,} of {run.planned:,} planned messages")
    ctx.record(
        "dispatch_locmem",
        "sent_per_s",
        round(sent / seconds, 1),
        "messages/s",
        target=DISPATCHED_PER_S_TARGET,
        higher_is_better=True,
    )
    locmem.reset()


# The other messaging benchmarks live beside their code; importing them here registers them.
from messaging import gateway_benchmark, report_benchmark  # noqa: E402, F401
