"""Calls: events from the autodialer and the PBXs -> Call rows, outcomes on Messages, follow-ups.

Every event is stored once under its unique key (``GatewayEvent``: provider, call id, sequence),
so replays change nothing. A call's state is then folded from *all* its stored events, whatever
order they arrived in: the latest ``ended`` gives the disposition and duration, the earliest
``answered`` the answer time, digits are joined in their own order. Follow-ups run once, for the
events processed in this pass:

- a digit: its meaning from ``VOICE_DTMF_ACTIONS`` (default 1 = callback request for operators,
  2 = do not call: call marketing consent withdrawn with source IVR and the number blocked);
- an unanswered end (busy, no answer): a new attempt after ``VOICE_RETRY_MINUTES``, inside the
  client's call window, within ``VOICE_MAX_ATTEMPTS`` and the per-number daily and weekly caps;
- an incoming call: its Call row with the client matched by phone and the operator extension,
  which the card's "incoming call" pop-up reads.

Events for a Message that dispatch has not marked sent yet wait (unprocessed) for the next pass.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from django.utils.module_loading import import_string
from django.utils.translation import gettext

from crm.db.raw import bulk_update_rows
from crm.models import (
    Channel,
    Client,
    ConsentAction,
    ConsentPurpose,
    ConsentSource,
)
from crm.phones import normalize_phone
from crm.services import ConsentChange, consent_record_many
from messaging.backends import get_backend
from messaging.backends.voice import NotSupported, VoiceBackend
from messaging.events import CallEvent
from messaging.models import (
    Call,
    CallbackRequest,
    CallbackSource,
    CallDirection,
    CallState,
    EventKind,
    GatewayEvent,
    Message,
    MessageStatus,
    NumberBlock,
    NumberBlockReason,
    TimeTarget,
)
from messaging.selectors_calls import (
    earliest_by_caps,
    number_dials,
    numbers_blocked,
)
from messaging.services.dispatch import consents_in_force
from messaging.services.events import gateway_events_record
from messaging.services.policy import Policy, active_policy, is_quiet, next_send_time

logger = logging.getLogger(__name__)

STATE_RANK = {CallState.RINGING: 0, CallState.ANSWERED: 1, CallState.DTMF: 2, CallState.ENDED: 3}

# Dispositions every backend normalizes to.
ANSWERED, BUSY, NO_ANSWER, FAILED = "answered", "busy", "no_answer", "failed"
_OUTCOME_STATUS = {
    ANSWERED: MessageStatus.ANSWERED,
    BUSY: MessageStatus.BUSY,
    NO_ANSWER: MessageStatus.NO_ANSWER,
}
# Messages an event may move: sent by dispatch, or already on a call.
_CALL_STATUSES = {
    MessageStatus.SENT,
    MessageStatus.DIALING,
    MessageStatus.ANSWERED,
    MessageStatus.BUSY,
    MessageStatus.NO_ANSWER,
    MessageStatus.FAILED,
}
_WAITING_STATUSES = {MessageStatus.PLANNED, MessageStatus.QUEUED}
RETRY_DISPOSITIONS = {BUSY, NO_ANSWER}
# Autodial events with no Message id (Zadarma echoes none) match the latest call to the number.
MATCH_WINDOW = dt.timedelta(hours=2)
# Events whose Message never leaves "planned"/"queued" stop waiting after this long.
ORPHAN_AFTER = dt.timedelta(hours=24)
CALLBACK, DO_NOT_CALL, WRONG_NUMBER = "callback", "do_not_call", "wrong_number"


# Backends --------------------------------------------------------------------------------------


def pbx_backend() -> VoiceBackend:
    """The backend for click-to-call and incoming calls: ``VOICE_PBX_BACKEND`` or the voice one."""
    path = settings.VOICE_PBX_BACKEND
    if not path:
        backend = get_backend(Channel.CALL)
    else:
        backend = import_string(path)(channel=Channel.CALL, **settings.VOICE_PBX_BACKEND_OPTIONS)
    if not isinstance(backend, VoiceBackend):
        raise NotSupported(f"{type(backend).__name__} is not a voice backend")
    return backend


def voice_backend_for(provider: str) -> VoiceBackend | None:
    """The configured backend (voice or PBX) of ``provider``: webhooks read its secrets."""
    candidates = []
    try:
        candidates.append(get_backend(Channel.CALL))
    except Exception:  # noqa: BLE001 - a broken VOICE_BACKEND must not hide the PBX one
        logger.exception("VOICE_BACKEND cannot be built")
    if settings.VOICE_PBX_BACKEND:
        candidates.append(
            import_string(settings.VOICE_PBX_BACKEND)(
                channel=Channel.CALL, **settings.VOICE_PBX_BACKEND_OPTIONS
            )
        )
    for backend in candidates:
        if isinstance(backend, VoiceBackend) and backend.provider == provider:
            return backend
    return None


# Recording and applying events -------------------------------------------------------------------


@dataclass
class CallApplyResult:
    recorded: int = 0  # new events stored
    processed: int = 0  # events applied in this pass
    waiting: int = 0  # events whose Message is not sent yet
    messages: int = 0  # Messages whose outcome changed
    callbacks: int = 0
    opt_outs: int = 0
    retries: int = 0


def call_events_apply(*, events: Sequence[CallEvent]) -> CallApplyResult:
    """Store events once (replays are dropped) and apply everything pending for their calls."""
    recorded = gateway_events_record(events=events)
    keys = {(e.provider[:30], e.call_id[:120]) for e in events}
    result = call_events_process(calls=keys)
    result.recorded = len(recorded)
    return result


@dataclass
class _CallFold:
    provider: str
    call_id: str
    direction: str = ""
    from_number: str = ""
    to_number: str = ""
    extension: str = ""
    message_id: int | None = None
    started_at: dt.datetime | None = None
    answered_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    state: str = CallState.RINGING
    disposition: str = ""
    duration: int | None = None
    digits: list[tuple[dt.datetime, str, str]] = field(default_factory=list)
    autodial: bool = False
    ended_key: tuple[dt.datetime, str] | None = None

    def add(self, occurred_at: dt.datetime, sequence: str, message_id: int | None, p: Any) -> None:
        state = str(p.get("state", CallState.RINGING))
        self.direction = self.direction or str(p.get("direction", ""))
        self.from_number = self.from_number or str(p.get("from_number", ""))
        self.to_number = self.to_number or str(p.get("to_number", ""))
        self.extension = self.extension or str(p.get("extension", ""))
        self.message_id = self.message_id or message_id
        self.autodial = self.autodial or bool(p.get("autodial"))
        if self.started_at is None or occurred_at < self.started_at:
            self.started_at = occurred_at
        if STATE_RANK.get(CallState(state), 0) > STATE_RANK[CallState(self.state)]:
            self.state = state
        if state == CallState.ANSWERED and (
            self.answered_at is None or occurred_at < self.answered_at
        ):
            self.answered_at = occurred_at
        elif state == CallState.DTMF and p.get("digits"):
            self.digits.append((occurred_at, sequence, str(p["digits"])))
        elif state == CallState.ENDED and (
            self.ended_key is None or (occurred_at, sequence) > self.ended_key
        ):
            self.ended_key = (occurred_at, sequence)
            self.ended_at = occurred_at
            self.disposition = str(p.get("disposition") or "")
            self.duration = p.get("duration")

    @property
    def outcome(self) -> str:
        if self.ended_at is None:
            return ANSWERED if self.answered_at else ""
        # An answered call cannot have gone unanswered (Mango reports no disposition at all).
        if self.answered_at is not None and self.disposition in ("", ANSWERED, NO_ANSWER):
            return ANSWERED
        return self.disposition or (ANSWERED if self.answered_at else FAILED)

    @property
    def digit_string(self) -> str:
        return "".join(d for _, _, d in sorted(self.digits))[:20]

    def client_phone(self) -> str:
        raw = self.from_number if self.direction == CallDirection.INBOUND else self.to_number
        return e164(raw)


def e164(raw: str) -> str:
    """PBXs write numbers as digits with the country code ("79161234567"): read them so."""
    raw = (raw or "").strip()
    if raw.isdigit() and len(raw) >= 11:
        return normalize_phone("+" + raw) or normalize_phone(raw) or raw
    return normalize_phone(raw) or raw


def call_events_process(
    *,
    calls: Iterable[tuple[str, str]] | None = None,
    event_ids: Iterable[int] | None = None,
    limit: int = 5000,
) -> CallApplyResult:
    """Apply stored, unprocessed call events (of some calls, some events, or the oldest ones)."""
    result = CallApplyResult()
    pending = GatewayEvent.objects.filter(kind=EventKind.CALL, processed_at__isnull=True)
    if event_ids is not None:
        pending = pending.filter(id__in=list(event_ids))
    keys: set[tuple[str, str]]
    if calls is not None:
        keys = set(calls)
        if not keys:
            return result
        pending = pending.filter(
            provider__in={p for p, _ in keys}, external_id__in={c for _, c in keys}
        )
    rows = [
        r
        for r in pending.order_by("id").values_list("id", "provider", "external_id")[:limit]
        if calls is None or (r[1], r[2]) in keys
    ]
    if not rows:
        return result
    keys = {(p, c) for _, p, c in rows}
    now = timezone.now()
    skip_locked = connection.features.has_select_for_update_skip_locked
    with transaction.atomic():
        # Another processor may hold some of these: take only what nobody else is applying.
        mine = set(
            GatewayEvent.objects.select_for_update(skip_locked=skip_locked)
            .filter(id__in=[r[0] for r in rows], processed_at__isnull=True)
            .values_list("id", flat=True)
        )
        if not mine:
            return result
        folds, new_events = _fold(keys, mine)
        _resolve_messages(folds, now)
        messages = {
            m.id: m
            for m in Message.objects.select_for_update()
            .filter(id__in={f.message_id for f in folds.values() if f.message_id})
            .select_related("client")
            .order_by("id")
        }
        waiting: set[tuple[str, str]] = set()
        for key, fold in folds.items():
            message = messages.get(fold.message_id) if fold.message_id else None
            if (
                message is not None
                and message.status in _WAITING_STATUSES
                and fold.started_at
                and fold.started_at > now - ORPHAN_AFTER
            ):
                waiting.add(key)
        processed_now = {key: events for key, events in new_events.items() if key not in waiting}
        result.waiting = sum(len(new_events[k]) for k in waiting)
        active = {k: f for k, f in folds.items() if k not in waiting}
        clients = _clients_by_phone({f.client_phone() for f in active.values() if not f.message_id})
        _calls_upsert(active, messages, clients)
        result.messages = _messages_update(active, messages, now)
        followups = _followups(active, processed_now, messages, clients, now)
        result.callbacks, result.opt_outs, result.retries = followups
        done = [eid for events in processed_now.values() for eid, *_ in events]
        GatewayEvent.objects.filter(id__in=done).update(processed_at=now)
        resolved = [
            GatewayEvent(id=eid, message_id=active[key].message_id)
            for key, events in processed_now.items()
            for eid, _, _, _, mid in events
            if mid is None and active[key].message_id
        ]
        if resolved:
            GatewayEvent.objects.bulk_update(resolved, ["message_id"])
        result.processed = len(done)
    return result


_NewEvent = tuple[int, dt.datetime, str, dict[str, Any], int | None]


def _fold(
    keys: set[tuple[str, str]], mine: set[int]
) -> tuple[dict[tuple[str, str], _CallFold], dict[tuple[str, str], list[_NewEvent]]]:
    folds: dict[tuple[str, str], _CallFold] = {}
    new: dict[tuple[str, str], list[_NewEvent]] = defaultdict(list)
    events = GatewayEvent.objects.filter(
        kind=EventKind.CALL,
        provider__in={p for p, _ in keys},
        external_id__in={c for _, c in keys},
    ).values_list("id", "provider", "external_id", "sequence", "occurred_at", "payload", "message")
    for eid, provider, call_id, sequence, occurred_at, payload, message_id in sorted(
        events, key=lambda r: (r[4], r[3], r[0])
    ):
        key = (provider, call_id)
        if key not in keys:
            continue
        fold = folds.setdefault(key, _CallFold(provider, call_id))
        fold.add(occurred_at, sequence, message_id, payload)
        if eid in mine:
            new[key].append((eid, occurred_at, sequence, payload, message_id))
    return folds, new


def _resolve_messages(folds: dict[tuple[str, str], _CallFold], now: dt.datetime) -> None:
    """Autodial calls reported without our id: the latest call message to the same number."""
    loose = {
        f.client_phone(): f
        for f in folds.values()
        if f.message_id is None and f.autodial and f.direction == CallDirection.OUTBOUND
    }
    if not loose:
        return
    rows = (
        Message.objects.filter(
            channel=Channel.CALL,
            recipient__in=list(loose),
            status__in=[MessageStatus.SENT, MessageStatus.DIALING],
            sent_at__gte=now - MATCH_WINDOW,
        )
        .order_by("recipient", "sent_at", "id")
        .values_list("recipient", "id")
    )
    latest = dict(rows)  # ordered ascending: the last one per number wins
    for phone, fold in loose.items():
        fold.message_id = latest.get(phone)


def _clients_by_phone(phones: set[str]) -> dict[str, int]:
    phones = {p for p in phones if p and p.startswith("+")}
    if not phones:
        return {}
    # The lowest id wins when several clients share a number.
    return {
        phone.as_e164: cid  # str() of a PhoneNumber is the display format, not E.164
        for cid, phone in Client.objects.filter(phone__in=phones)
        .order_by("-id")
        .values_list("id", "phone")
    }


def _calls_upsert(
    folds: dict[tuple[str, str], _CallFold],
    messages: dict[int, Message],
    clients: dict[str, int],
) -> None:
    rows = []
    for fold in folds.values():
        message = messages.get(fold.message_id) if fold.message_id else None
        rows.append(
            Call(
                provider=fold.provider,
                call_id=fold.call_id,
                direction=fold.direction or CallDirection.OUTBOUND,
                from_number=fold.from_number[:32],
                to_number=fold.to_number[:32],
                extension=fold.extension[:32],
                client_id=message.client_id if message else clients.get(fold.client_phone()),
                message_id=message.id if message else None,
                state=fold.state,
                disposition=fold.outcome[:30] if fold.ended_at else "",
                digits=fold.digit_string,
                duration=fold.duration,
                started_at=fold.started_at or timezone.now(),
                answered_at=fold.answered_at,
                ended_at=fold.ended_at,
            )
        )
    Call.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["provider", "call_id"],
        update_fields=[
            "direction",
            "from_number",
            "to_number",
            "extension",
            "client",
            "message",
            "state",
            "disposition",
            "digits",
            "duration",
            "started_at",
            "answered_at",
            "ended_at",
        ],
    )


def _messages_update(
    folds: dict[tuple[str, str], _CallFold], messages: dict[int, Message], now: dt.datetime
) -> int:
    changed = []
    for fold in folds.values():
        message = messages.get(fold.message_id) if fold.message_id else None
        if message is None or message.status not in _CALL_STATUSES:
            continue  # cancelled or expired meanwhile: the call result changes nothing
        outcome = fold.outcome
        if fold.ended_at is not None:
            status = _OUTCOME_STATUS.get(outcome, MessageStatus.FAILED)
        elif outcome == ANSWERED:
            status = MessageStatus.ANSWERED
        else:
            status = MessageStatus.DIALING
        digits = fold.digit_string
        duration = fold.duration if fold.ended_at is not None else None
        if status == MessageStatus.FAILED:
            reason = f"call: {fold.disposition or 'failed'}"
        else:
            reason = f"call: {outcome or 'dialing'}"
        if (message.status, message.dtmf, message.call_duration) == (status, digits, duration):
            continue
        message.status = status
        message.dtmf = digits
        message.call_duration = duration
        message.status_reason = reason[:200]
        message.updated_at = now
        changed.append(message)
    if changed:
        Message.objects.bulk_update(
            changed, ["status", "dtmf", "call_duration", "status_reason", "updated_at"]
        )
    return len(changed)


# Follow-ups ------------------------------------------------------------------------------------


def dtmf_actions() -> dict[str, str]:
    return {str(k): str(v) for k, v in settings.VOICE_DTMF_ACTIONS.items()}


def _followups(
    folds: dict[tuple[str, str], _CallFold],
    new_events: dict[tuple[str, str], list[_NewEvent]],
    messages: dict[int, Message],
    clients: dict[str, int],
    now: dt.datetime,
) -> tuple[int, int, int]:
    actions = dtmf_actions()
    callbacks: list[CallbackRequest] = []
    consent: list[ConsentChange] = []
    blocks: list[NumberBlock] = []
    retry_from: list[Message] = []
    for key, events in new_events.items():
        fold = folds[key]
        message = messages.get(fold.message_id) if fold.message_id else None
        client_id = message.client_id if message else clients.get(fold.client_phone())
        phone = message.recipient if message else fold.client_phone()
        for _, occurred_at, _, payload, _ in events:
            state = payload.get("state")
            if state == CallState.DTMF:
                for digit in str(payload.get("digits") or ""):
                    action = actions.get(digit)
                    if action == CALLBACK and client_id:
                        callbacks.append(
                            CallbackRequest(
                                client_id=client_id,
                                message=message,
                                offer_id=message.offer_id if message else None,
                                reason=message.reason if message else "",
                                source=CallbackSource.IVR,
                            )
                        )
                    elif action == DO_NOT_CALL and phone:
                        blocks.append(
                            NumberBlock(
                                phone=phone,
                                reason=NumberBlockReason.DO_NOT_CALL,
                                note=f"IVR {fold.provider}:{fold.call_id}"[:200],
                            )
                        )
                        if client_id:
                            consent.append(
                                ConsentChange(
                                    client_id=client_id,
                                    channel=Channel.CALL,
                                    purpose=ConsentPurpose.MARKETING,
                                    action=ConsentAction.WITHDRAWN,
                                    source=ConsentSource.IVR,
                                    wording_version=settings.VOICE_IVR_WORDING_VERSION,
                                    occurred_at=min(occurred_at, now),
                                    evidence=f"{fold.provider}:{fold.call_id} pressed {digit}",
                                    actor_label=phone,
                                )
                            )
                    elif action == WRONG_NUMBER and phone:
                        blocks.append(
                            NumberBlock(
                                phone=phone,
                                reason=NumberBlockReason.WRONG_NUMBER,
                                note=f"IVR {fold.provider}:{fold.call_id}"[:200],
                            )
                        )
            if (
                state == CallState.ENDED
                and message is not None
                and fold.outcome in RETRY_DISPOSITIONS
                and message.status in (MessageStatus.BUSY, MessageStatus.NO_ANSWER)
            ):
                retry_from.append(message)
    if callbacks:
        CallbackRequest.objects.bulk_create(callbacks, ignore_conflicts=True)
    if blocks:
        NumberBlock.objects.bulk_create(blocks, ignore_conflicts=True)
    if consent:
        consent_record_many(changes=consent)
    retries = call_retries_schedule(messages=retry_from, now=now) if retry_from else []
    return len(callbacks), len({c.client_id for c in consent}), len(retries)


# Retries and caps ------------------------------------------------------------------------------


def attempt_of(key: str) -> tuple[str, int]:
    """(root key, attempt number): "run:3:42:call" -> (…, 1); "…#r2" -> (…, 2)."""
    root, sep, number = key.rpartition("#r")
    if sep and number.isdigit():
        return root, int(number)
    return key, 1


def retry_key(key: str, attempt: int) -> str:
    root, _ = attempt_of(key)
    suffix = f"#r{attempt}"
    if len(root) + len(suffix) > 80:
        root = "h:" + hashlib.sha256(root.encode()).hexdigest()[:60]
    return root + suffix


def call_retries_schedule(
    *, messages: Sequence[Message], now: dt.datetime | None = None, policy: Policy | None = None
) -> list[Message]:
    """Plan the next attempt of busy / unanswered calls, where attempts, caps, window allow."""
    now = now or timezone.now()
    policy = policy or active_policy()
    blocked = numbers_blocked(m.recipient for m in messages)
    dials = number_dials((m.recipient for m in messages), now=now)
    delay = dt.timedelta(minutes=settings.VOICE_RETRY_MINUTES)
    retries = []
    for message in messages:
        _, attempt = attempt_of(message.idempotency_key)
        if attempt >= settings.VOICE_MAX_ATTEMPTS or message.recipient in blocked:
            continue
        at = earliest_by_caps(dials.get(message.recipient, []), now + delay)
        if at is None:
            continue
        at = next_send_time(
            policy,
            channel=Channel.CALL,
            time_zone=str(message.client.time_zone),
            earliest=at,
            target=TimeTarget.ASAP,
        )
        if at is None or (message.expires_at is not None and at >= message.expires_at):
            continue
        retries.append(
            Message(
                client_id=message.client_id,
                channel=message.channel,
                run_id=message.run_id,
                firing_id=message.firing_id,
                offer_id=message.offer_id,
                variant_id=message.variant_id,
                is_transactional=message.is_transactional,
                recipient=message.recipient,
                subject=message.subject,
                text=message.text,
                reason=message.reason,
                products=message.products,
                promo_code=message.promo_code,
                scheduled_for=at,
                expires_at=message.expires_at,
                status=MessageStatus.PLANNED,
                status_reason=f"retry {attempt + 1} after {message.status}"[:200],
                idempotency_key=retry_key(message.idempotency_key, attempt + 1),
            )
        )
    # A replayed "ended" reaches here only if its first pass rolled back; the key dedupes anyway.
    Message.objects.bulk_create(retries, ignore_conflicts=True)
    return retries


# The autodialer ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AutodialResult:
    calls: int
    seconds: float
    outcomes: dict[str, int]

    @property
    def rate_per_minute(self) -> float:
        return self.calls * 60 / self.seconds if self.seconds else 0.0


def dial_jobs_claim(*, provider: str, limit: int, now: dt.datetime | None = None) -> list[Any]:
    """Take up to ``limit`` sent call messages for the dialer: inside the client's call window,
    number not blocked, not expired; mark them dialing and create their Call rows."""
    from messaging.backends.sip import DialJob, call_id_for

    now = now or timezone.now()
    skip_locked = connection.features.has_select_for_update_skip_locked
    policy = active_policy()
    with transaction.atomic():
        candidates = list(
            Message.objects.select_for_update(skip_locked=skip_locked, of=("self",))
            .filter(
                # Dispatch marks a call it handed over "dialing" (or "sent"); the Call row made
                # here is what says the dialer took it.
                channel=Channel.CALL,
                status__in=[MessageStatus.SENT, MessageStatus.DIALING],
                provider_id__startswith="sip-",
            )
            .filter(~Exists(Call.objects.filter(provider=provider, message_id=OuterRef("id"))))
            .select_related("client")
            .order_by("sent_at", "id")[: max(limit * 4, 20)]
        )
        blocked = numbers_blocked(m.recipient for m in candidates)
        # Consent again at dial time: a withdrawal after dispatch handed the call over (the
        # message is "dialing", no longer pending) must still stop it (DESIGN invariant 1).
        granted = consents_in_force(candidates)
        cancelled: list[int] = []
        no_consent: list[int] = []
        expired: list[int] = []
        deferred: list[Message] = []
        taken: list[Message] = []
        for m in candidates:
            zone_name = str(m.client.time_zone)
            if m.recipient in blocked:
                cancelled.append(m.id)
            elif not m.is_transactional and (m.client_id, Channel.CALL) not in granted:
                no_consent.append(m.id)
            elif m.expires_at is not None and m.expires_at <= now:
                expired.append(m.id)
            elif is_quiet(policy, channel=Channel.CALL, time_zone=zone_name, at=now):
                # Back to the outbox until the client's call window opens, so it does not sit
                # at the head of the dial queue (or expire if the offer ends first).
                opening = next_send_time(
                    policy, channel=Channel.CALL, time_zone=zone_name, earliest=now
                )
                if opening is None or (m.expires_at is not None and opening >= m.expires_at):
                    expired.append(m.id)
                else:
                    m.status, m.scheduled_for = MessageStatus.PLANNED, opening
                    m.status_reason, m.updated_at = "deferred: call window closed", now
                    deferred.append(m)
            elif len(taken) < limit:
                taken.append(m)
        if cancelled:
            Message.objects.filter(id__in=cancelled).update(
                status=MessageStatus.CANCELLED, status_reason="number blocked", updated_at=now
            )
        if no_consent:
            Message.objects.filter(id__in=no_consent).update(
                status=MessageStatus.CANCELLED,
                status_reason="no consent at dial time",
                updated_at=now,
            )
        bulk_update_rows(
            Message, deferred, ["status", "scheduled_for", "status_reason", "updated_at"]
        )
        if expired:
            Message.objects.filter(id__in=expired).update(
                status=MessageStatus.EXPIRED, status_reason="expired before dialing", updated_at=now
            )
        if not taken:
            return []
        Call.objects.bulk_create(
            [
                Call(
                    provider=provider,
                    call_id=call_id_for(m.id),
                    direction=CallDirection.OUTBOUND,
                    to_number=m.recipient,
                    client_id=m.client_id,
                    message_id=m.id,
                    state=CallState.RINGING,
                    started_at=now,
                )
                for m in taken
            ],
            ignore_conflicts=True,
        )
        Message.objects.filter(id__in=[m.id for m in taken]).update(
            status=MessageStatus.DIALING, status_reason="call: dialing", updated_at=now
        )
    return [DialJob(m.id, call_id_for(m.id), m.recipient, m.text) for m in taken]


def calls_close_stale(*, provider: str = "sip", now: dt.datetime | None = None) -> int:
    """Calls a crashed dialer left open: end them as failed (their Messages fail too)."""
    now = now or timezone.now()
    stale = list(
        Call.objects.filter(
            provider=provider,
            direction=CallDirection.OUTBOUND,
            state__in=[CallState.RINGING, CallState.ANSWERED, CallState.DTMF],
            started_at__lt=now - dt.timedelta(minutes=settings.VOICE_STALE_CALL_MINUTES),
        ).values_list("call_id", "message_id", "to_number")
    )
    if not stale:
        return 0
    call_events_apply(
        events=[
            CallEvent(
                provider=provider,
                call_id=call_id,
                state=CallState.ENDED,
                direction=CallDirection.OUTBOUND,
                occurred_at=now,
                to_number=to_number,
                disposition=FAILED,
                sequence="999-stale",
                message_id=message_id,
                payload={"reason": "the dialer lost the call"},
            )
            for call_id, message_id, to_number in stale
        ]
    )
    return len(stale)


def autodial_run(
    *,
    max_calls: int | None = None,
    lines: int | None = None,
    idle_seconds: float = 0.0,
    budget_seconds: float | None = None,
) -> AutodialResult:
    """Dial sent call messages on the SIP backend's lines until none is left (or limits hit).

    ``idle_seconds``: keep waiting for new messages this long after the last call (0: stop at
    once); ``budget_seconds``: stop taking new calls after this long (running calls finish).
    """
    backend = get_backend(Channel.CALL)
    if not isinstance(backend, VoiceBackend) or not backend.uses_dialer:
        raise NotSupported(f"{type(backend).__name__} places its calls itself; no dialer needed")
    calls_close_stale(provider=backend.provider)
    started = time.monotonic()
    placed = 0
    outcomes: dict[str, int] = defaultdict(int)
    with backend.dialer(lines=lines) as dialer:  # type: ignore[attr-defined]
        last_activity = time.monotonic()
        while True:
            taking = (max_calls is None or placed < max_calls) and (
                budget_seconds is None or time.monotonic() - started < budget_seconds
            )
            jobs = []
            free = dialer.free_lines()
            if taking and free:
                want = free if max_calls is None else min(free, max_calls - placed)
                jobs = dial_jobs_claim(provider=backend.provider, limit=want)
                for job in jobs:
                    dialer.submit(job)
                placed += len(jobs)
            events = dialer.events(timeout=0.2)
            if events:
                call_events_apply(events=events)
                for event in events:
                    if event.state == CallState.ENDED:
                        outcomes[event.disposition or FAILED] += 1
            if jobs or events or dialer.busy():
                last_activity = time.monotonic()
                continue
            if not taking or time.monotonic() - last_activity >= idle_seconds:
                break
    return AutodialResult(placed, time.monotonic() - started, dict(outcomes))


# Click-to-call -----------------------------------------------------------------------------------


def click_to_call(*, operator_extension: str, client: Client | int, reference: str = "") -> str:
    """Ring the operator's extension, then the client, through the PBX; return its request id."""
    if not isinstance(client, Client):
        client = Client.objects.only("phone").get(pk=client)
    if not client.phone:
        raise NotSupported(gettext("The client has no phone number."))
    if not operator_extension.strip():
        raise NotSupported(gettext("Your user has no PBX extension to call from."))
    return pbx_backend().originate(
        extension=operator_extension.strip(), number=client.phone.as_e164, reference=reference
    )
