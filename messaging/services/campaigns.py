"""Campaigns: start a run, plan it batch by batch, keep its schedule in django-celery-beat.

A run walks its audience snapshot (segment membership, refreshed when the run starts) in client
id order. Each batch is one transaction that holds the run's row lock and records how far it got,
so a second planner on the same run (a duplicated task, a restart after a crash) continues where
the first stopped instead of planning anything twice.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import deque
from collections.abc import Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django_celery_beat.models import ClockedSchedule, PeriodicTask

from crm.models import Channel
from messaging.models import (
    OFFER_NOT_TRANSACTIONAL,
    Campaign,
    CampaignRun,
    CampaignStatus,
    RunStatus,
    ScheduleKind,
)
from messaging.services.planning import BatchOutcome, Candidate, Origin, Reason, plan_batch
from messaging.services.policy import Policy, active_policy
from messaging.services.texts import plain_templates, proposal_candidate, render_texts
from segments.models import Segment, SegmentMember
from segments.services import segment_refresh_membership

if TYPE_CHECKING:
    from offers.engine import Proposal


class CampaignError(Exception):
    """A campaign cannot start: say why in words a marketer understands."""


def campaign_segments(campaign: Campaign) -> list[Segment]:
    if campaign.segment_id:
        return [campaign.segment]  # type: ignore[list-item]
    if campaign.offer_id:
        return list(campaign.offer.segments.all())  # type: ignore[union-attr]
    return []


def campaign_validate(campaign: Campaign, *, at: dt.datetime | None = None) -> None:
    """Raise :class:`CampaignError` when the campaign could not send anything sensible."""
    at = at or timezone.now()
    channels = list(campaign.channels or [])
    if not channels:
        raise CampaignError(_("Choose at least one channel."))
    unknown = [c for c in channels if c not in Channel.values]
    if unknown:
        raise CampaignError(_("Unknown channels: %s.") % ", ".join(map(str, unknown)))
    if not campaign_segments(campaign):
        raise CampaignError(_("Choose an audience: a segment, or an offer with segments."))
    offer = campaign.offer
    if offer is not None and campaign.is_transactional:
        raise CampaignError(OFFER_NOT_TRANSACTIONAL)
    if offer is not None:
        if offer.status != "active" or not (offer.starts_at <= at < offer.ends_at):
            raise CampaignError(_("The offer is not active now."))
        missing = [c for c in channels if c not in (offer.channels or [])]
        if missing:
            raise CampaignError(_("The offer has no text for: %s.") % ", ".join(map(str, missing)))
        return
    texts = {
        Channel.SMS: campaign.sms_text,
        Channel.CALL: campaign.voice_script,
        Channel.EMAIL: campaign.email_body,
    }
    empty = [c for c in channels if not texts[Channel(c)].strip()]
    if empty:
        raise CampaignError(_("Write the message for: %s.") % ", ".join(map(str, empty)))


def campaign_run_start(
    *, campaign: Campaign | int, user: Any = None, now: dt.datetime | None = None
) -> CampaignRun:
    """Open a run and plan it in a task after commit. Refuses a second run while one plans."""
    from messaging.tasks.campaigns import plan_campaign_run

    now = now or timezone.now()
    with transaction.atomic():
        campaign_id = campaign if isinstance(campaign, int) else campaign.pk
        locked = Campaign.objects.select_for_update().get(pk=campaign_id)
        campaign_validate(locked, at=now)
        if locked.runs.filter(status=RunStatus.PLANNING).exists():
            raise CampaignError(_("A run of this campaign is being planned already."))
        run = CampaignRun.objects.create(
            campaign=locked,
            started_at=now,
            started_by=user if getattr(user, "is_authenticated", False) else None,
        )
        if locked.status in (CampaignStatus.DRAFT, CampaignStatus.FINISHED):
            locked.status = (
                CampaignStatus.SCHEDULED
                if locked.schedule_kind == ScheduleKind.RECURRING
                else CampaignStatus.RUNNING
            )
            locked.save(update_fields=["status", "updated_at"])
        transaction.on_commit(lambda: plan_campaign_run.delay(run.pk))
    return run


def _audience(run: CampaignRun, segments: Sequence[Segment], limit: int) -> list[int]:
    return _audience_after(segments, run.last_client_id, limit)


def _audience_after(segments: Sequence[Segment], after: int, limit: int) -> list[int]:
    members = SegmentMember.objects.filter(
        segment_id__in=[s.pk for s in segments], client_id__gt=after
    ).order_by("client_id")
    if len(segments) > 1:
        # A client in two of the segments is one recipient. With one segment the key already
        # says so, and without DISTINCT the next batch is read straight off the index: with
        # it, PostgreSQL may aggregate every remaining member to keep 5,000 (it did, 63 ms a
        # batch, when the statistics had not seen the segment filled).
        members = members.distinct()
    return list(members.values_list("client_id", flat=True)[:limit])


def _audience_batches(segments: Sequence[Segment], after: int, size: int) -> Iterator[list[int]]:
    """The batches the planner will read, in its order, from the client after ``after``."""
    while ids := _audience_after(segments, after, size):
        yield ids
        after = ids[-1]


def campaign_run_plan(
    *, run: CampaignRun | int, batch_size: int | None = None, now: dt.datetime | None = None
) -> CampaignRun:
    """Plan every batch of a run (resumable; safe to call twice at once)."""
    run_id = run if isinstance(run, int) else run.pk
    size = batch_size or settings.MESSAGING_PLAN_BATCH
    current = CampaignRun.objects.select_related("campaign", "campaign__offer").get(pk=run_id)
    if current.status != RunStatus.PLANNING:
        return current
    campaign = current.campaign
    segments = campaign_segments(campaign)
    try:
        _snapshot_audience(current, segments, now)
        policy = active_policy()
        builder = _CandidateBuilder(campaign, policy)
        builder.propose_ahead(segments, current.last_client_id, size, now)
        try:
            while True:
                with transaction.atomic():
                    locked = CampaignRun.objects.select_for_update().get(pk=run_id)
                    if locked.status != RunStatus.PLANNING:
                        return locked
                    ids = _audience(locked, segments, size)
                    if not ids:
                        locked.status = RunStatus.PLANNED
                        locked.finished_at = timezone.now()
                        locked.save(update_fields=["status", "finished_at"])
                        _after_run(campaign)
                        return locked
                    batch_now = now or timezone.now()
                    outcome = builder.plan(locked, ids, batch_now)
                    _record(locked, ids, outcome)
        finally:
            builder.close()
    except Exception as exc:
        CampaignRun.objects.filter(pk=run_id, status=RunStatus.PLANNING).update(
            status=RunStatus.FAILED, error=str(exc)[:2000], finished_at=timezone.now()
        )
        raise


def _snapshot_audience(run: CampaignRun, segments: Sequence[Segment], now: Any) -> None:
    """Refresh the audience's membership once per run (not when resuming) and record its size."""
    if run.processed or run.audience:
        return
    for segment in segments:
        segment_refresh_membership(segment=segment, now=now)
    audience = (
        SegmentMember.objects.filter(segment_id__in=[s.pk for s in segments])
        .values("client_id")
        .distinct()
        .count()
    )
    CampaignRun.objects.filter(pk=run.pk).update(audience=audience)
    run.audience = audience


def _record(run: CampaignRun, ids: Sequence[int], outcome: BatchOutcome) -> None:
    excluded = dict(run.excluded or {})
    for reason, count in outcome.excluded.items():
        excluded[reason] = excluded.get(reason, 0) + count
    run.processed += len(ids)
    run.last_client_id = ids[-1]
    run.planned += outcome.planned
    run.control += outcome.control
    run.excluded = excluded
    run.save(update_fields=["processed", "last_client_id", "planned", "control", "excluded"])


def _after_run(campaign: Campaign) -> None:
    from messaging.tasks.dispatch import dispatch_messages

    if campaign.schedule_kind != ScheduleKind.RECURRING:
        Campaign.objects.filter(pk=campaign.pk, status=CampaignStatus.RUNNING).update(
            status=CampaignStatus.FINISHED
        )
    # Messages due now go out without waiting for the next periodic dispatch.
    transaction.on_commit(lambda: dispatch_messages.delay())


class _CandidateBuilder:
    """Turns a batch of client ids into candidates: the offer engine's proposals, or the
    campaign's own plain texts rendered per client."""

    def __init__(self, campaign: Campaign, policy: Policy) -> None:
        self.campaign = campaign
        self.policy = policy
        self.catalog: Any = None
        # Proposals computed ahead for the batches the planner is about to read, in order.
        self._ahead: Generator[list[Proposal], None, None] | None = None
        self._ahead_batches: deque[list[int]] = deque()
        self.templates = (
            plain_templates(
                sms=campaign.sms_text,
                voice=campaign.voice_script,
                email_subject=campaign.email_subject,
                email_body=campaign.email_body,
                channels=campaign.channels,
            )
            if campaign.offer_id is None
            else {}
        )

    def origin(self, run: CampaignRun) -> Origin:
        c = self.campaign
        return Origin(
            channels=list(c.channels),
            key_prefix=f"run:{run.pk}",
            run_id=run.pk,
            prefer_client_channel=c.prefer_client_channel,
            target=c.time_target,
            is_transactional=c.is_transactional,
            landing_url=c.landing_url,
        )

    def plan(self, run: CampaignRun, ids: Sequence[int], now: dt.datetime) -> BatchOutcome:
        origin = self.origin(run)
        if self.campaign.offer_id is None:
            candidates = self._plain(ids)
            return plan_batch(origin=origin, candidates=candidates, policy=self.policy, now=now)
        candidates, missing = self._proposed(ids, now)
        outcome = plan_batch(origin=origin, candidates=candidates, policy=self.policy, now=now)
        if missing:
            outcome.excluded[Reason.NO_PRODUCT] += missing
        return outcome

    def _propose_options(self, now: dt.datetime | None) -> dict[str, Any]:
        from offers.catalog import Catalog

        if self.catalog is None:
            self.catalog = Catalog.load(at=now or timezone.now())
        channels = list(self.campaign.channels)
        return {
            "offers": [self.campaign.offer],
            "channel": channels[0] if len(channels) == 1 else None,
            "at": now,
            "catalog": self.catalog,
            "assign_codes": False,
        }

    def propose_ahead(
        self, segments: Sequence[Segment], after: int, size: int, now: dt.datetime | None
    ) -> None:
        """Start proposing for the coming batches (``offers.engine.propose_batches``: on
        PostgreSQL, threads with connections of their own), so the engine works on the next
        batches while this thread writes the current one. Without ``now`` each batch is
        proposed at the moment its thread starts it, a batch or two before it is planned."""
        from offers.engine import batches_in_parallel, propose_batches

        if self.campaign.offer_id is None or not batches_in_parallel():
            return  # one by one, each batch is proposed when it is planned

        def batches() -> Iterator[list[int]]:
            for ids in _audience_batches(segments, after, size):
                self._ahead_batches.append(ids)
                yield ids

        self._ahead = propose_batches(batches(), **self._propose_options(now))

    def _proposed_ahead(self, ids: Sequence[int]) -> list[Proposal] | None:
        """The proposals computed ahead for ``ids``, or None when the planner read another
        batch (a second planner of the run took some): then the rest is proposed inline."""
        if self._ahead is None:
            return None
        proposals = next(self._ahead, None)
        batch = self._ahead_batches.popleft() if self._ahead_batches else None
        if proposals is not None and batch == list(ids):
            return proposals
        self.close()
        return None

    def close(self) -> None:
        if self._ahead is not None:
            self._ahead.close()  # stops the engine's threads
            self._ahead = None
            self._ahead_batches.clear()

    def _proposed(self, ids: Sequence[int], now: dt.datetime) -> tuple[list[Candidate], int]:
        from offers.engine import propose

        proposals = self._proposed_ahead(ids)
        if proposals is None:
            proposals = propose(ids, **{**self._propose_options(now), "at": now})
        candidates = [proposal_candidate(p) for p in proposals]
        return candidates, len(ids) - len(candidates)

    def _plain(self, ids: Sequence[int]) -> list[Candidate]:
        from offers.engine import client_contexts

        return [
            Candidate(client_id=cid, texts=render_texts(self.templates, context))
            for cid, context in client_contexts(ids).items()
        ]


# Schedules --------------------------------------------------------------------------------------


def campaign_schedule_sync(*, campaign: Campaign) -> PeriodicTask | None:
    """Keep the campaign's beat entry in step with its schedule (one-off at a time, or crontab).

    The entry lives in django-celery-beat, so staff see it with the other periodic tasks; it is
    enabled only while the campaign is scheduled."""
    name = f"campaign #{campaign.pk}: {campaign.name}"[:200]
    task = campaign.periodic_task
    wants = campaign.status == CampaignStatus.SCHEDULED and (
        (campaign.schedule_kind == ScheduleKind.AT and campaign.run_at is not None)
        or (campaign.schedule_kind == ScheduleKind.RECURRING and campaign.crontab_id is not None)
    )
    if not wants:
        if task is not None:
            task.enabled = False
            task.save(update_fields=["enabled"])
        return task
    fields: dict[str, Any] = {
        "name": name,
        "task": "messaging.tasks.campaigns.start_campaign_run",
        "kwargs": json.dumps({"campaign_id": campaign.pk}),
        "queue": "messaging",
        "enabled": True,
        "crontab": None,
        "clocked": None,
        "interval": None,
        "one_off": False,
    }
    if campaign.schedule_kind == ScheduleKind.AT:
        clocked, _created = ClockedSchedule.objects.get_or_create(clocked_time=campaign.run_at)
        fields.update(clocked=clocked, one_off=True)
    else:
        fields["crontab"] = campaign.crontab
    if task is None:
        task = PeriodicTask.objects.create(**fields)
        Campaign.objects.filter(pk=campaign.pk).update(periodic_task=task)
        campaign.periodic_task = task
    else:
        for key, value in fields.items():
            setattr(task, key, value)
        task.save()
    return task


def campaign_schedule(*, campaign: Campaign, user: Any = None) -> CampaignRun | None:
    """Arm the campaign: start now, or let beat start it at its time / on its crontab."""
    if campaign.schedule_kind == ScheduleKind.NOW:
        return campaign_run_start(campaign=campaign, user=user)
    campaign_validate(campaign)
    campaign.status = CampaignStatus.SCHEDULED
    campaign.save(update_fields=["status", "updated_at"])
    campaign_schedule_sync(campaign=campaign)
    return None


def campaign_pause(*, campaign: Campaign) -> None:
    campaign.status = CampaignStatus.PAUSED
    campaign.save(update_fields=["status", "updated_at"])
    campaign_schedule_sync(campaign=campaign)
