"""Group commit of webhook events: concurrent requests share INSERTs and lose nothing."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
from django.db import OperationalError, connections
from django.utils import timezone

from messaging.events import DeliveryReport, DeliveryState, GatewayEventData
from messaging.hooks import batching
from messaging.hooks.batching import EventCoalescer
from messaging.models import GatewayEvent
from messaging.services.events import gateway_events_record

pytestmark = pytest.mark.django_db(transaction=True)


def _report(i: int, state: DeliveryState = DeliveryState.DELIVERED) -> DeliveryReport:
    return DeliveryReport(
        provider="kannel",
        external_id=str(10_000 + i),
        state=state,
        sequence="1" if state == DeliveryState.DELIVERED else "8",
        occurred_at=timezone.now() - dt.timedelta(seconds=1),
    )


def _in_threads(calls: list[Any]) -> list[Any]:
    """Each call in its own thread (own connection), all released together."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = calls[i]()
        except Exception as error:  # noqa: BLE001 - the test inspects it
            results[i] = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    return results


class SlowFirstStore:
    """``gateway_events_record`` whose first call lingers, so the other requests queue up."""

    def __init__(self, *, fail_second: bool = False) -> None:
        self.batches: list[int] = []
        self.fail_second = fail_second
        self.lock = threading.Lock()

    def __call__(self, *, events: Sequence[GatewayEventData]) -> Any:
        with self.lock:
            self.batches.append(len(events))
            call = len(self.batches)
        if call == 1:
            time.sleep(0.5)
        if call == 2 and self.fail_second:
            raise OperationalError("the database went away")
        return gateway_events_record(events=events)


def test_concurrent_requests_share_inserts_and_every_event_is_stored_once(
    postgres: None, monkeypatch: Any
) -> None:
    # Given 20 requests at once, two of them carrying the same report (smsbox retried)
    store = SlowFirstStore()
    monkeypatch.setattr(batching, "gateway_events_record", store)
    coalescer = EventCoalescer()
    reports = [_report(i) for i in range(19)] + [_report(0)]

    # When each request hands its report over
    results = _in_threads([lambda r=r: coalescer.record(r) for r in reports])

    # Then the requests that came while the first INSERT ran were stored by one more INSERT
    # (not one each), and each request returned once its report was stored
    assert len(store.batches) == 2 and sum(store.batches) == 20
    assert sorted(results, key=str) == [False] + [True] * 19
    assert GatewayEvent.objects.count() == 19
    assert set(GatewayEvent.objects.values_list("external_id", flat=True)) == {
        str(10_000 + i) for i in range(19)
    }


def test_a_failed_insert_fails_every_request_of_its_batch_and_the_next_ones_go_on(
    postgres: None, monkeypatch: Any
) -> None:
    # Given a database that refuses the second INSERT
    store = SlowFirstStore(fail_second=True)
    monkeypatch.setattr(batching, "gateway_events_record", store)
    coalescer = EventCoalescer()

    results = _in_threads([lambda i=i: coalescer.record(_report(i)) for i in range(6)])

    # Then the requests of the refused batch failed (smsbox retries them): none was answered
    # as stored without being stored
    failed = [i for i, r in enumerate(results) if isinstance(r, OperationalError)]
    assert len(store.batches) == 2 and len(failed) == store.batches[1] > 0
    stored = set(GatewayEvent.objects.values_list("external_id", flat=True))
    assert stored == {str(10_000 + i) for i, r in enumerate(results) if r is True}
    # ... and the coalescer is not stuck: the retries are stored
    assert [coalescer.record(_report(i)) for i in failed] == [True] * len(failed)
    assert GatewayEvent.objects.count() == 6
