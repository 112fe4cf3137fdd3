"""Campaign tasks: start a run (beat, for scheduled campaigns) and plan it."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from messaging.services import campaigns

_RETRY = {
    "autoretry_for": (OperationalError,),
    "retry_backoff": 10,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 5,
}


@shared_task(soft_time_limit=55 * 60, time_limit=60 * 60, **_RETRY)
def plan_campaign_run(run_id: int) -> dict[str, int]:
    """Plan a run batch by batch; resumable, so a retry or a duplicate goes on where it was."""
    run = campaigns.campaign_run_plan(run=run_id)
    return {"planned": run.planned, "control": run.control, "processed": run.processed}


@shared_task(**_RETRY)
def start_campaign_run(campaign_id: int) -> int | None:
    """Beat's entry for scheduled and recurring campaigns."""
    try:
        run = campaigns.campaign_run_start(campaign=campaign_id)
    except campaigns.CampaignError:
        return None  # already running, or no longer valid: the admin shows the campaign as is
    return run.pk
