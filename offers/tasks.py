"""Celery tasks for offers: thin, idempotent wrappers over ``offers.services``."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from offers import services

_RETRY = {
    "autoretry_for": (OperationalError,),
    "retry_backoff": 30,
    "retry_backoff_max": 600,
    "retry_jitter": True,
    "max_retries": 3,
}


@shared_task(soft_time_limit=25 * 60, time_limit=30 * 60, **_RETRY)
def mine_associations() -> dict[str, float]:
    """Re-mine category associations from the last year of purchases (nightly)."""
    result = services.associations_mine()
    return {
        "pairs": result.pairs,
        "created": result.created,
        "updated": result.updated,
        "seconds": result.seconds,
    }
