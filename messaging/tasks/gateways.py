"""Gateway event tasks: apply stored delivery reports (thin wrappers over services.events)."""

from __future__ import annotations

from celery import shared_task
from django.core.cache import cache
from django.db import OperationalError, transaction

from messaging.services.events import gateway_events_sweep

APPLY_PENDING_KEY = "messaging:gateway-events:apply-scheduled"


@shared_task(
    soft_time_limit=4 * 60,
    time_limit=5 * 60,
    autoretry_for=(OperationalError,),
    retry_backoff=5,
    max_retries=3,
)
def gateway_events_sweep_task(budget_seconds: float = 200.0) -> int:
    """Apply reports that waited for dispatch to mark their Message sent (every minute)."""
    return gateway_events_sweep(budget_seconds=budget_seconds).applied


@shared_task(
    soft_time_limit=60,
    time_limit=90,
    autoretry_for=(OperationalError,),
    retry_backoff=2,
    max_retries=5,
)
def gateway_events_apply_pending_task() -> int:
    """Apply everything webhooks stored since the last run (one batch for many callbacks)."""
    return gateway_events_sweep(budget_seconds=50.0).applied


def gateway_events_apply_soon(*, delay: int = 1) -> None:
    """After commit, schedule one apply task for all reports arriving in the next ``delay`` s.

    A webhook answers after one INSERT; thousands of callbacks a second become a few set-based
    batches instead of thousands of tasks. The mark expires by itself when the task is due, so
    it works with a cache of each web process's own (the default): the task, in a worker
    process, could not clear it there. A report stored while the mark is set was committed
    before the task runs, which then applies it; the first one after the mark expired schedules
    the next task. Whole seconds: Redis keeps no shorter expiry.
    """

    def schedule() -> None:
        if cache.add(APPLY_PENDING_KEY, 1, timeout=delay):
            gateway_events_apply_pending_task.apply_async(countdown=delay)

    transaction.on_commit(schedule)
