"""Celery tasks for loyalty: thin, idempotent wrappers over ``loyalty.services``.

Each retries only on ``OperationalError`` (a lost connection, a deadlock victim, a lock timeout),
with a bound; anything else is a bug and fails loudly.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import partial

from celery import shared_task
from django.db import OperationalError, transaction

from loyalty import services

# Loyalty work goes to the "default" queue (CELERY_TASK_DEFAULT_QUEUE); the queue is named where a
# task is sent (here and in loyalty/schedules.py), since Celery deprecates a per-task attribute.
QUEUE = "default"

_RETRY = {
    "autoretry_for": (OperationalError,),
    "retry_backoff": 5,
    "retry_backoff_max": 120,
    "retry_jitter": True,
    "max_retries": 5,
}


def _when(at: str | None) -> datetime | None:
    return datetime.fromisoformat(at) if at else None


@shared_task(soft_time_limit=9 * 60, time_limit=10 * 60, **_RETRY)
def accrue_points(purchase_ids: list[int] | None = None) -> int:
    """Accrue points for the given purchases, or for every pending one."""
    return services.points_accrue_for_purchases(purchase_ids=purchase_ids)


@shared_task(soft_time_limit=25 * 60, time_limit=30 * 60, **_RETRY)
def expire_points(at: str | None = None) -> int:
    """Expire points due by ``at`` (ISO 8601, default now)."""
    return services.points_expire(at=_when(at))


@shared_task(soft_time_limit=25 * 60, time_limit=30 * 60, **_RETRY)
def recompute_tiers(at: str | None = None) -> dict[str, int]:
    """Recompute rolling spend and tiers as of ``at`` (ISO 8601, default now)."""
    return services.tiers_recompute(at=_when(at))


def accrue_points_enqueue(*, purchase_ids: Iterable[int], chunk_size: int = 5000) -> None:
    """Queue accrual for ``purchase_ids`` in chunks, once the current transaction commits."""
    ids = sorted(set(purchase_ids))
    for start in range(0, len(ids), chunk_size):
        transaction.on_commit(partial(_send_accrue, ids[start : start + chunk_size]))


def _send_accrue(purchase_ids: list[int]) -> None:
    accrue_points.apply_async(kwargs={"purchase_ids": purchase_ids}, queue=QUEUE)
