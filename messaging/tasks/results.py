"""Results tasks: the nightly attribution recompute, and a run's recompute on demand."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from messaging.services.attribution import attribution_recompute


@shared_task(
    soft_time_limit=55 * 60,
    time_limit=60 * 60,
    autoretry_for=(OperationalError,),
    retry_backoff=60,
    retry_backoff_max=600,
    max_retries=3,
)
def recompute_attribution(run_id: int | None = None) -> dict[str, int]:
    """Without a run: the last weeks of purchases (nightly). With one: that run's window."""
    result = attribution_recompute(run=run_id)
    return {"deleted": result.deleted, "created": result.created}
