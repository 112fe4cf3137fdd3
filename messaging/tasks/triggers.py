"""Trigger tasks: evaluate the active scenarios (beat, every 15 minutes)."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.db import OperationalError

from messaging.services import triggers


@shared_task(
    soft_time_limit=12 * 60,
    time_limit=14 * 60,
    autoretry_for=(OperationalError,),
    retry_backoff=10,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=3,
)
def evaluate_triggers() -> dict[str, Any]:
    """Idempotent: a firing exists once per (scenario, client, occasion, step), so a retry or an
    overlapping run plans nothing twice."""
    return triggers.triggers_evaluate().as_dict()
