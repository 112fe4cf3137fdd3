"""Celery tasks of crm: thin wrappers over services."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from crm import importing


@shared_task(
    soft_time_limit=55 * 60,
    time_limit=60 * 60,
    autoretry_for=(OperationalError,),
    retry_backoff=5,
    max_retries=3,
)
def import_job_run_task(job_id: int) -> None:
    """Run (or finish) an import job; a retried or repeated run is safe (idempotent upserts)."""
    importing.import_job_run(job_id=job_id)
