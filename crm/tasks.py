"""Celery tasks of crm: thin wrappers over services."""

from __future__ import annotations

from functools import partial

from celery import shared_task
from django.contrib.auth import get_user_model
from django.db import OperationalError, transaction

from crm import importing, privacy

_RETRY = {
    "autoretry_for": (OperationalError,),
    "retry_backoff": 5,
    "retry_backoff_max": 120,
    "retry_jitter": True,
    "max_retries": 5,
}


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


@shared_task(soft_time_limit=25 * 60, time_limit=30 * 60, **_RETRY)
def privacy_retention() -> int:
    """Anonymize clients past the retention period, up to 50 batches; if more remain, queue the
    next run (idempotent: anonymized clients are no longer candidates)."""
    result = privacy.retention_anonymize()
    if result.more:
        transaction.on_commit(lambda: privacy_retention.apply_async(queue="default"))
    return result.anonymized


@shared_task(soft_time_limit=10 * 60, time_limit=15 * 60, **_RETRY)
def import_files_purge() -> int:
    """Delete uploaded import files past IMPORT_FILE_RETENTION_DAYS (idempotent)."""
    return importing.import_files_purge()


@shared_task(soft_time_limit=25 * 60, time_limit=30 * 60, **_RETRY)
def client_anonymize(client_ids: list[int], actor_id: int | None = None) -> int:
    """Anonymize the given clients (a large admin selection); repeating it changes nothing."""
    actor = get_user_model().objects.filter(pk=actor_id).first() if actor_id else None
    return len(privacy.client_anonymize_many(client_ids=client_ids, actor=actor))


def client_anonymize_enqueue(
    *, client_ids: list[int], actor_id: int | None, chunk_size: int = 10_000
) -> int:
    """Queue anonymization in chunks once the current transaction commits; returns the count."""
    ids = sorted(set(client_ids))
    for start in range(0, len(ids), chunk_size):
        transaction.on_commit(
            partial(
                client_anonymize.apply_async,
                kwargs={"client_ids": ids[start : start + chunk_size], "actor_id": actor_id},
                queue="default",
            )
        )
    return len(ids)
