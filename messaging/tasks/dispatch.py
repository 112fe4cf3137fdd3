"""Dispatch task: sends due messages (periodic, and right after a run is planned)."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from messaging.services.dispatch import dispatch_due


@shared_task(
    soft_time_limit=5 * 60,
    time_limit=6 * 60,
    autoretry_for=(OperationalError,),
    retry_backoff=5,
    max_retries=3,
)
def dispatch_messages(budget_seconds: float = 240.0) -> dict[str, int]:
    """Send what is due now, for at most ``budget_seconds`` (the next run picks up the rest)."""
    return dict(dispatch_due(budget_seconds=budget_seconds).counts)
