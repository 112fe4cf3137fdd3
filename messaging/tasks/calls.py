"""Call tasks: apply stored call events (thin wrappers over messaging.services.calls)."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from messaging.services.calls import call_events_process


@shared_task(
    soft_time_limit=60,
    time_limit=90,
    autoretry_for=(OperationalError,),
    retry_backoff=2,
    max_retries=5,
)
def call_events_process_task(event_ids: list[int]) -> int:
    """Apply these call events (idempotent: processed ones are skipped)."""
    return call_events_process(event_ids=event_ids).processed


@shared_task(
    soft_time_limit=4 * 60,
    time_limit=5 * 60,
    autoretry_for=(OperationalError,),
    retry_backoff=5,
    max_retries=3,
)
def call_events_sweep_task(limit: int = 5000) -> int:
    """Apply call events that waited for dispatch to mark their Message sent (periodic)."""
    return call_events_process(limit=limit).processed
