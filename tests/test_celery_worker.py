"""A real Celery worker, through the configured broker, runs a loyalty task end to end.

Runs with the default filesystem broker (in a private folder, so a developer's queued messages
are neither consumed nor mixed in) and with Redis (CELERY_BROKER_URL=redis://...). Works on
SQLite too: the worker thread's own connection opens Django's shared-cache in-memory test DB.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from django.utils import timezone

from crm.celery import app
from crm.models import Client, Purchase
from loyalty.models import LoyaltyAccount, PointsEntry, Tier
from loyalty.tasks import QUEUE, accrue_points

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def private_broker(celery_broker: str, tmp_path: Path) -> Iterator[str]:
    """The configured broker; a filesystem one moved to a fresh folder for this test."""
    if not celery_broker.startswith("filesystem://"):
        yield celery_broker
        return
    saved = app.conf.broker_transport_options
    folders = {name: tmp_path / name for name in ("queue", "processed", "control")}
    for folder in folders.values():
        folder.mkdir()
    app.conf.broker_transport_options = {
        **saved,
        "data_folder_in": str(folders["queue"]),
        "data_folder_out": str(folders["queue"]),
        "processed_folder": str(folders["processed"]),
        "control_folder": str(folders["control"]),
    }
    _drop_broker_connections()
    try:
        yield celery_broker
    finally:
        app.conf.broker_transport_options = saved
        _drop_broker_connections()


def _drop_broker_connections() -> None:
    """Forget pooled connections and producers made with the old folders. ``app.close()`` is
    not enough: it drops the connection pool, but the producer pool keeps the old one, and a
    task sent by an earlier test in the same process went on to the old folder."""
    if app._pool is not None:
        app._pool.force_close_all()
    app._pool = None
    app.amqp._producer_pool = None


def wait_for(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_worker_accrues_points_sent_through_the_broker(private_broker):
    # given a purchase waiting for its points
    Tier.objects.create(name="Base", rank=1, earn_rate=2)
    client = Client.objects.create(last_name="Petrova")
    purchase = Purchase.objects.create(client=client, purchased_at=timezone.now(), total=1234)

    # when a real worker consumes the task sent through the broker
    with start_worker(
        app, pool="solo", perform_ping_check=False, queues=[QUEUE], shutdown_timeout=10
    ):
        accrue_points.apply_async(kwargs={"purchase_ids": [purchase.id]}, queue=QUEUE)
        done = wait_for(lambda: PointsEntry.objects.filter(purchase=purchase).exists())

    # then
    assert done, f"no earn entry 20 s after sending through {private_broker}"
    assert list(PointsEntry.objects.values_list("purchase_id", "kind", "points")) == [
        (purchase.id, "earn", 24)
    ]
    assert LoyaltyAccount.objects.get(client=client).balance == 24
