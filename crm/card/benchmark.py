"""Card benchmark: ``python manage.py benchmark card --clients 1000000``.

Over the demo data (and the demo offers) it gives a few cat owners a long history, 1,000
purchases with their items and 200 messages each (set-based inserts, once), logs in as an
operator and times, through Django's test client, the card page, its JSON and its offers panel
for those clients (p50/p95 and the queries of one request), then the phone lookup as an operator
types it ("8 (912) 345-67-89") over many clients.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
import time
from collections.abc import Iterator
from decimal import Decimal
from functools import partial
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.http import HttpResponse
from django.test import Client as HttpClient
from django.urls import reverse
from django.utils import timezone

from crm.benchmarking import BenchmarkContext, BenchmarkFailed, Timing, percentile, register

HEAVY_CLIENTS = 5
HEAVY_PURCHASES = 1000
HEAVY_MESSAGES = 200
REQUESTS = 30  # per case, spread over the heavy clients
LOOKUPS = 200
PAGE_P95_TARGET_MS = 150.0
PAGE_QUERIES_TARGET = 20
LOOKUP_P95_TARGET_MS = 20.0
MARK = "bench-card"


@register("card", help="Operator card: page, JSON, offers panel (p95, queries); phone lookup")
def card_benchmark(ctx: BenchmarkContext) -> None:
    from offers.demo import offers_demo_setup
    from segments.selectors import segment_clients

    now = timezone.now()
    demo = offers_demo_setup(codes=0, now=now)
    cat_owners = (
        segment_clients(segment=demo.segment, now=now)
        .exclude(phone="")
        .order_by("pk")
        .values_list("pk", flat=True)[:5000]
    )
    heavy = _heavy_clients(ctx, list(cat_owners), now)
    http = HttpClient()
    http.force_login(_operator())

    cases = [
        ("card_page", "card:card", "text/html"),
        ("card_json", "card:card-json", "application/json"),
        ("card_offers", "card:offers", "text/html"),
    ]
    for case, name, content_type in cases:
        urls = [reverse(name, kwargs={"client_id": cid}) for cid in heavy]
        for url in urls:  # warm-up: plans, the catalog snapshot, and the correctness check
            _check(case, http.get(url), content_type)
        queries = max(ctx.count_queries(partial(http.get, url)) for url in urls)
        cycle = itertools.cycle(urls)

        def get(cycle: Iterator[str] = cycle) -> object:
            return http.get(next(cycle))

        timing = ctx.time_calls(get, repeat=max(REQUESTS, ctx.repeat))
        ctx.record(case, "p50", timing.p50_ms, "ms")
        ctx.record(case, "p95", timing.p95_ms, "ms", target=PAGE_P95_TARGET_MS)
        ctx.record(case, "queries", queries, "queries", target=PAGE_QUERIES_TARGET)

    _lookups(ctx, http)


def _lookups(ctx: BenchmarkContext, http: HttpClient) -> None:
    """The phone lookup (normalize, one indexed query) for clients across the table, as the
    selector and as the search page (which redirects to the card on one match)."""
    from crm.benchmarks import spoken_phone
    from crm.card.selectors import card_search
    from crm.models import Client

    top = Client.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    rng = random.Random(8)
    probes = sorted({rng.randint(1, top) for _ in range(LOOKUPS * 2)})
    phones = list(
        Client.objects.filter(pk__in=probes).exclude(phone="").values_list("pk", "phone")[:LOOKUPS]
    )
    if not phones:
        raise BenchmarkFailed("no clients with phones to look up; seed demo data")
    samples = []
    for pk, phone in phones:
        spoken = spoken_phone(str(phone))
        started = time.perf_counter()
        found = card_search(spoken)
        samples.append((time.perf_counter() - started) * 1000)
        if pk not in {c.pk for c in found}:
            raise BenchmarkFailed(f"looking up {spoken!r} did not find client #{pk}")
    timing = Timing(tuple(samples))
    ctx.record("phone_lookup", "p50", timing.p50_ms, "ms")
    ctx.record("phone_lookup", "p95", timing.p95_ms, "ms", target=LOOKUP_P95_TARGET_MS)

    page_samples = []
    url = reverse("card:search")
    for _pk, phone in phones[:REQUESTS]:
        started = time.perf_counter()
        response = http.get(url, {"q": spoken_phone(str(phone))})
        page_samples.append((time.perf_counter() - started) * 1000)
        if response.status_code not in (200, 302):
            raise BenchmarkFailed(f"search page returned {response.status_code}")
    ctx.record("search_page", "p95", percentile(page_samples, 95), "ms")


def _check(case: str, response: Any, content_type: str) -> None:
    if response.status_code != 200 or not response["Content-Type"].startswith(content_type):
        raise BenchmarkFailed(f"{case}: {response.status_code} {response.get('Content-Type')}")
    body = response.content.decode() if isinstance(response, HttpResponse) else ""
    if case == "card_offers" and "card-offer" not in body:
        raise BenchmarkFailed("card_offers: no offer shown for a cat owner")


def _operator() -> Any:
    user, created = get_user_model().objects.get_or_create(
        username="bench-operator", defaults={"is_staff": True}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    user.groups.add(Group.objects.get(name="Operator"))
    return user


def _heavy_clients(ctx: BenchmarkContext, candidates: list[int], now: dt.datetime) -> list[int]:
    """Cat owners the demo offers propose something to, given 1,000 purchases and 200
    messages each; made once and found again by their purchases' external ids on later runs.

    The added history lies before the offers' lookback, so it does not change what they
    propose: a loyal client with years of purchases, whom the card must still show at once."""
    from crm.models import Purchase
    from offers.engine import live_offers, propose

    done = list(
        Purchase.objects.filter(external_id__startswith=f"{MARK}-")
        .values_list("client_id", flat=True)
        .distinct()
    )
    if len(done) >= HEAVY_CLIENTS:
        return sorted(done)[:HEAVY_CLIENTS]
    fresh = [pk for pk in candidates if pk not in done]
    offered = sorted({p.client_id for p in propose(fresh, at=now) if not p.is_control})
    if len(offered) < HEAVY_CLIENTS:
        raise BenchmarkFailed("too few cat owners with an offer; seed more demo data")
    step = max(1, len(offered) // HEAVY_CLIENTS)
    chosen = offered[::step][: HEAVY_CLIENTS - len(done)]
    lookback = max((o.lookback_days for o in live_offers(at=now)), default=365)
    before = now - dt.timedelta(days=int(lookback) + 1)
    started = time.perf_counter()
    for client_id in chosen:
        _give_history(client_id, before)
    ctx.note(
        f"gave {len(chosen)} clients {HEAVY_PURCHASES} purchases and {HEAVY_MESSAGES} messages "
        f"each in {time.perf_counter() - started:.1f}s"
    )
    return sorted(done + chosen)


def _give_history(client_id: int, before: dt.datetime) -> None:
    """Purchases a day apart going back from ``before``, and messages likewise."""
    from crm.models import Channel, Client, Product, Purchase, PurchaseItem
    from messaging.models import Message, MessageStatus

    products = list(
        Product.objects.filter(active=True).order_by("pk").values_list("pk", "price")[:200]
    )
    if not products:
        raise BenchmarkFailed("no products; seed demo data")
    phone = str(Client.objects.values_list("phone", flat=True).get(pk=client_id))
    rng = random.Random(client_id)
    with transaction.atomic():
        purchases = Purchase.objects.bulk_create(
            [
                Purchase(
                    client_id=client_id,
                    purchased_at=before - dt.timedelta(days=i),
                    total=Decimal("0"),
                    external_id=f"{MARK}-{client_id}-{i}",
                )
                for i in range(HEAVY_PURCHASES)
            ],
            batch_size=1000,
        )
        items = []
        for purchase in purchases:
            for product_id, price in rng.sample(products, 2):
                items.append(
                    PurchaseItem(
                        purchase_id=purchase.pk,
                        product_id=product_id,
                        unit_price=price,
                        client_id=client_id,
                        purchased_at=purchase.purchased_at,
                    )
                )
                purchase.total += price
        PurchaseItem.objects.bulk_create(items, batch_size=2000)
        Purchase.objects.bulk_update(purchases, ["total"], batch_size=1000)
        channels = [Channel.SMS, Channel.SMS, Channel.CALL, Channel.EMAIL]
        statuses = [MessageStatus.DELIVERED, MessageStatus.SENT, MessageStatus.FAILED]
        Message.objects.bulk_create(
            [
                Message(
                    client_id=client_id,
                    channel=channels[i % len(channels)],
                    recipient=phone,
                    text=f"Сообщение {i}",
                    reason="Вы покупали корм для кошек",
                    scheduled_for=before - dt.timedelta(days=2 * i),
                    sent_at=before - dt.timedelta(days=2 * i),
                    status=statuses[i % len(statuses)],
                    idempotency_key=f"{MARK}:{client_id}:{i}",
                )
                for i in range(HEAVY_MESSAGES)
            ],
            batch_size=1000,
        )
