"""Celery tasks for segments: thin, idempotent wrappers over ``segments.services``."""

from __future__ import annotations

from functools import partial

from celery import shared_task
from django.db import OperationalError, transaction

from segments import services
from segments.selectors import segments_due_for_refresh

_RETRY = {
    "autoretry_for": (OperationalError,),
    "retry_backoff": 5,
    "retry_backoff_max": 120,
    "retry_jitter": True,
    "max_retries": 5,
}


@shared_task(soft_time_limit=9 * 60, time_limit=10 * 60, **_RETRY)
def refresh_segment(segment_id: int) -> int:
    """Refresh one segment's membership snapshot; returns its size."""
    return services.segment_refresh_membership(segment=segment_id).size


@shared_task(soft_time_limit=60, time_limit=120, **_RETRY)
def refresh_marked_segments() -> int:
    """Queue a refresh of every segment marked "refresh periodically", one task each."""
    ids = list(segments_due_for_refresh().values_list("pk", flat=True))
    for segment_id in ids:
        transaction.on_commit(partial(refresh_segment.delay, segment_id))
    return len(ids)
