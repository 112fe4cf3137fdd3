"""Writes and checks behind the messaging admin: the one active contact policy, campaign and
scenario texts checked before they are saved, a campaign saved with its beat entry in step."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from crm.models import Channel
from messaging.models import (
    Campaign,
    CampaignStatus,
    ContactPolicy,
    ScheduleKind,
    TriggerScenario,
)
from messaging.services.campaigns import CampaignError, campaign_schedule_sync, campaign_validate

# Text fields of a campaign or scenario: (field, channel, is the e-mail body or subject).
TEXT_FIELDS = (
    ("sms_text", Channel.SMS, False),
    ("voice_script", Channel.CALL, False),
    ("email_subject", Channel.EMAIL, False),
    ("email_body", Channel.EMAIL, True),
)


def contact_policy_save(*, policy: ContactPolicy, active: bool) -> ContactPolicy:
    """Save a policy; making it active deactivates every other policy in the same transaction,
    so there is never a moment with two (the database refuses two anyway)."""
    with transaction.atomic():
        if active:
            others = ContactPolicy.objects.select_for_update().filter(is_active=True)
            if policy.pk is not None:
                others = others.exclude(pk=policy.pk)
            # Deactivate first: the partial unique index allows one active row at a time.
            for other in others:
                other.is_active = False
                other.save(update_fields=["is_active", "updated_at"])
        policy.is_active = active
        policy.save()
    return policy


def contact_policy_activate(*, policy: ContactPolicy) -> ContactPolicy:
    return contact_policy_save(policy=policy, active=True)


def message_text_errors(obj: Campaign | TriggerScenario) -> dict[str | None, list[str]]:
    """Template problems of each non-empty text, by field (syntax, unknown variables)."""
    from offers.templating import TemplateCheckError, compile_message_template

    errors: dict[str | None, list[str]] = {}
    for name, _channel, html in TEXT_FIELDS:
        source = getattr(obj, name) or ""
        if not source.strip():
            continue
        try:
            compile_message_template(source, html=html)
        except TemplateCheckError as exc:
            errors[name] = list(exc.messages)
    return errors


def campaign_check(
    campaign: Campaign, *, now: dt.datetime | None = None
) -> dict[str | None, list[str]]:
    """Everything wrong with a campaign, by form field (None: the campaign as a whole)."""
    now = now or timezone.now()
    errors: dict[str | None, list[str]] = {}
    if campaign.offer_id is None:
        errors.update(message_text_errors(campaign))
    if campaign.schedule_kind == ScheduleKind.AT:
        if campaign.run_at is None:
            errors["run_at"] = [_("Give the time to send at.")]
        elif campaign.run_at <= now and campaign.run_at != _saved_run_at(campaign):
            errors["run_at"] = [_("The time to send at has passed.")]
    if campaign.schedule_kind == ScheduleKind.RECURRING and campaign.crontab_id is None:
        errors["crontab"] = [_("Choose a crontab schedule for a recurring campaign.")]
    if campaign.status == CampaignStatus.FINISHED:
        return errors  # a finished one-off may be renamed after its offer ended
    at = campaign.run_at if campaign.schedule_kind == ScheduleKind.AT and campaign.run_at else now
    try:
        campaign_validate(campaign, at=max(at, now))
    except CampaignError as exc:
        errors.setdefault(None, []).append(str(exc))
    return errors


def _saved_run_at(campaign: Campaign) -> dt.datetime | None:
    if campaign.pk is None:
        return None
    return Campaign.objects.filter(pk=campaign.pk).values_list("run_at", flat=True).first()


def campaign_save(*, campaign: Campaign, user: Any = None) -> Campaign:
    """Save a campaign edited in the admin and keep its beat entry in step with the schedule
    (a changed crontab or time, or a schedule kind that no longer needs one)."""
    with transaction.atomic():
        if campaign.pk is None and getattr(user, "is_authenticated", False):
            campaign.created_by = user
        campaign.save()
        if campaign.periodic_task_id is not None or campaign.status == CampaignStatus.SCHEDULED:
            campaign_schedule_sync(campaign=campaign)
    return campaign


def scenario_check(scenario: TriggerScenario) -> dict[str | None, list[str]]:
    """A scenario's channels and texts: each channel needs its text unless an offer has one."""
    errors = message_text_errors(scenario)
    channels = list(scenario.channels or [])
    if not channels:
        errors.setdefault("channels", []).append(_("Choose at least one channel."))
    if scenario.offer_id is None:
        texts = {
            Channel.SMS: scenario.sms_text,
            Channel.CALL: scenario.voice_script,
            Channel.EMAIL: scenario.email_body,
        }
        empty = [str(Channel(c).label) for c in channels if not (texts[Channel(c)] or "").strip()]
        if empty:
            errors.setdefault(None, []).append(_("Write the message for: %s.") % ", ".join(empty))
    else:
        offer_channels = scenario.offer.channels or []  # type: ignore[union-attr]
        missing = [str(Channel(c).label) for c in channels if c not in offer_channels]
        if missing:
            errors.setdefault(None, []).append(
                _("The offer has no text for: %s.") % ", ".join(missing)
            )
    return errors


def trigger_scenarios_set_active(*, scenarios: QuerySet[TriggerScenario], active: bool) -> int:
    """Switch scenarios on or off (the next trigger pass honours it); returns how many changed."""
    return scenarios.exclude(is_active=active).update(is_active=active, updated_at=timezone.now())
