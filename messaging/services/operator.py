"""What a call-center operator does from the client card: record how a call went, send the
suggested offer by SMS now, take a callback request from the queue.

Each is one service; the card's views only check permissions and show the result.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import models, transaction
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from crm.models import (
    Channel,
    Client,
    ConsentAction,
    ConsentPurpose,
    ConsentSource,
    Event,
    EventType,
)
from crm.services import consent_record
from messaging.models import (
    CallbackRequest,
    CallbackStatus,
    CallDirection,
    Message,
    NumberBlock,
    NumberBlockReason,
    TimeTarget,
)
from messaging.services.planning import Origin, Reason, plan_batch
from messaging.services.policy import Policy, active_policy, zone
from messaging.services.texts import proposal_candidate

# The wording an operator reads when a client asks not to be called (152-FZ: the version of
# what the client agreed to or withdrew from is kept with the consent event).
DO_NOT_CALL_WORDING = "call-center-do-not-call-1"
# A planned message due later than this is "deferred" (quiet hours), not "sent now".
DEFERRED_AFTER = dt.timedelta(minutes=2)


class CallOutcome(models.TextChoices):
    INTERESTED = "interested", _("interested")
    NOT_NOW = "not_now", _("not now")
    DO_NOT_CALL = "do_not_call", _("do not call")
    WRONG_NUMBER = "wrong_number", _("wrong number")


class OperatorError(Exception):
    """An operator's action that cannot be done; the message is shown as it is."""


# Call outcomes -----------------------------------------------------------------------------------


def call_outcome_record(
    *,
    client: Client,
    user: Any,
    outcome: str,
    note: str = "",
    direction: str = CallDirection.OUTBOUND,
    now: dt.datetime | None = None,
) -> Event:
    """Record how a call went as a call event on the client's timeline.

    "Do not call" withdraws the client's marketing consent for calls (source: call center,
    which also cancels calls already queued) and blocks the number for the autodialer;
    "wrong number" blocks the number. A callback request the operator had taken for the client
    is done."""
    if outcome not in CallOutcome.values:
        raise OperatorError(gettext("Unknown call outcome."))
    now = now or timezone.now()
    operator = user.get_username() if getattr(user, "is_authenticated", False) else ""
    phone = client.phone.as_e164 if client.phone else ""
    with transaction.atomic():
        event = Event.objects.create(
            client=client,
            type=EventType.CALL_IN if direction == CallDirection.INBOUND else EventType.CALL_OUT,
            occurred_at=now,
            payload={
                "outcome": outcome,
                "note": note.strip()[:1000],
                "operator": operator,
                "operator_id": getattr(user, "pk", None),
            },
        )
        if outcome == CallOutcome.DO_NOT_CALL:
            consent_record(
                client=client,
                channel=Channel.CALL,
                purpose=ConsentPurpose.MARKETING,
                action=ConsentAction.WITHDRAWN,
                source=ConsentSource.CALL_CENTER,
                wording_version=DO_NOT_CALL_WORDING,
                occurred_at=now,
                actor=user,
                evidence=f"call outcome, event {event.pk}",
            )
        if outcome in (CallOutcome.DO_NOT_CALL, CallOutcome.WRONG_NUMBER) and phone:
            NumberBlock.objects.bulk_create(
                [
                    NumberBlock(
                        phone=phone,
                        reason=NumberBlockReason(outcome),
                        note=f"operator {operator}, client {client.pk}"[:200],
                    )
                ],
                ignore_conflicts=True,
            )
        CallbackRequest.objects.filter(
            client=client, status=CallbackStatus.TAKEN, taken_by=user
        ).update(status=CallbackStatus.DONE)
    return event


# Callback queue ----------------------------------------------------------------------------------


def callback_take(*, request_id: int, user: Any, now: dt.datetime | None = None) -> bool:
    """Take an open callback request for ``user``; False when someone else already took it.

    One conditional UPDATE: of two operators taking the same request at once, the second
    waits for the first's row lock, re-reads the row, finds it no longer open and updates
    nothing."""
    now = now or timezone.now()
    taken = CallbackRequest.objects.filter(pk=request_id, status=CallbackStatus.OPEN).update(
        status=CallbackStatus.TAKEN, taken_by=user, taken_at=now
    )
    return taken == 1


# Send the offer now ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendResult:
    """The outcome of "send by SMS now": a planned message (maybe deferred by quiet hours), or
    the policy's reason it was not planned, with a sentence for the operator."""

    message: Message | None
    reason: str
    detail: str
    deferred: bool = False

    @property
    def planned(self) -> bool:
        return self.message is not None


def offer_send_now(
    *,
    client: Client,
    offer: Any,
    user: Any,
    now: dt.datetime | None = None,
    policy: Policy | None = None,
) -> SendResult:
    """Plan the offer to this one client by SMS as soon as the contact policy allows.

    The text, products and reason come from the offer engine, as in a campaign; consent,
    caps, gaps and quiet hours apply as to any marketing message."""
    from offers.engine import propose

    now = now or timezone.now()
    policy = policy or active_policy()
    proposals = [
        p
        for p in propose([client.pk], offers=[offer], channel=Channel.SMS, at=now)
        if p.client_id == client.pk
    ]
    if not proposals or proposals[0].is_control or "sms" not in proposals[0].texts:
        return SendResult(None, Reason.NOT_ELIGIBLE, _explain(Reason.NOT_ELIGIBLE, policy, offer))
    candidate = proposal_candidate(proposals[0])
    origin = Origin(
        channels=[Channel.SMS],
        key_prefix=f"operator:{uuid.uuid4().hex}",
        prefer_client_channel=False,
        target=TimeTarget.ASAP,
        landing_url=getattr(offer, "landing_url", "") or "",
    )
    with transaction.atomic():
        outcome = plan_batch(origin=origin, candidates=[candidate], policy=policy, now=now)
    planned = [m for m in outcome.messages if m.status == "planned"]
    if not planned:
        reason = next(iter(outcome.excluded), Reason.NOT_ELIGIBLE)
        return SendResult(None, reason, _explain(reason, policy, offer))
    message = Message.objects.get(idempotency_key=planned[0].idempotency_key)
    if message.scheduled_for - now > DEFERRED_AFTER:
        local = message.scheduled_for.astimezone(zone(str(client.time_zone)))
        if local.date() == now.astimezone(local.tzinfo).date():
            when = date_format(local, "H:i")
        else:
            when = date_format(local, "j E, H:i")
        detail = gettext("Quiet hours: the SMS will go at %(time)s client's local time.") % {
            "time": when
        }
        return SendResult(message, "", detail, deferred=True)
    _dispatch_soon()
    return SendResult(message, "", gettext("The SMS is sent."))


def _dispatch_soon() -> None:
    """Due now: out without waiting for the next periodic dispatch (as after a campaign run)."""
    from messaging.tasks.dispatch import dispatch_messages

    transaction.on_commit(lambda: dispatch_messages.delay(budget_seconds=30.0))


def _explain(reason: str, policy: Policy, offer: Any) -> str:
    """A sentence an operator understands for a planning exclusion reason."""
    effective = policy.for_offer(getattr(offer, "pk", None))
    sms = effective.channels.get(Channel.SMS)
    if reason == Reason.CHANNEL_CAP and sms is not None:
        return gettext("Not sent: SMS limit reached (%(limit)s in %(days)s days).") % {
            "limit": sms.limit,
            "days": _days(sms.window),
        }
    if reason == Reason.TOTAL_CAP:
        return gettext(
            "Not sent: limit of messages over all channels reached (%(limit)s in %(days)s days)."
        ) % {"limit": effective.total_limit, "days": _days(effective.total_window)}
    if reason == Reason.MIN_GAP:
        return gettext(
            "Not sent: the client got another message less than %(hours)s hours ago."
        ) % {"hours": _hours(effective.min_gap)}
    if reason == Reason.OFFER_CAP:
        cap = effective.offer_cap(getattr(offer, "pk", None))
        if cap is not None:
            return gettext("Not sent: this offer's limit reached (%(limit)s in %(days)s days).") % {
                "limit": cap.limit,
                "days": _days(cap.window),
            }
    messages = {
        Reason.NO_CONSENT: gettext("Not sent: the client has not consented to marketing SMS."),
        Reason.NO_ADDRESS: gettext("Not sent: the client has no phone number."),
        Reason.NO_TEXT: gettext("Not sent: the offer has no SMS text."),
        Reason.NO_WINDOW: gettext("Not sent: no allowed sending time in the next two weeks."),
        Reason.EXPIRED: gettext("Not sent: the offer ends before the quiet hours do."),
        Reason.NO_PROMO_CODE: gettext("Not sent: the offer has no promo codes left."),
        Reason.ANONYMIZED: gettext("Not sent: the client is anonymized."),
        Reason.NUMBER_BLOCKED: gettext("Not sent: the number is blocked."),
        Reason.ALREADY_PLANNED: gettext("Not sent: this SMS is already planned."),
        Reason.NOT_ELIGIBLE: gettext("Not sent: the offer is not available to this client."),
    }
    return messages.get(reason, gettext("Not sent: %(reason)s.") % {"reason": reason})


def _days(window: dt.timedelta) -> int:
    return max(1, round(window.total_seconds() / 86400))


def _hours(gap: dt.timedelta) -> int:
    return max(1, round(gap.total_seconds() / 3600))
