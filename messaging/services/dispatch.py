"""Dispatch: due Messages -> gateway backends, exactly once, consent re-checked at send time.

A chunk goes through two transactions:

1. **Claim** (short): take due ``planned`` messages with ``FOR UPDATE SKIP LOCKED`` (workers
   never wait for or take each other's messages), mark them ``queued`` with a lease and one more
   attempt, commit. From here on a crash leaves a visible trace: a ``queued`` message whose
   lease ran out.
2. **Send**: lock the chunk's consent rows ``FOR SHARE`` and re-check them, expiry, quiet hours,
   blocked numbers and, for calls, each number's daily and rolling-week caps (under a lock per
   number, so two workers never both take a number's last call); hand the rest to the backend;
   record each outcome; commit. A withdrawal (which updates the consent row) therefore either
   commits before this check and the message is cancelled, or waits until the send is recorded —
   never a send after a withdrawal. Promo codes the same way: the chunk's code rows are locked
   ``FOR SHARE``, so a code redeemed meanwhile cancels its message or waits for the send.

A ``queued`` message whose lease expired (its worker died between claim and record) is
recovered: if the backend can say which messages it accepted (``lookup``), those become ``sent``
and the rest are sent again (an idempotent backend dedupes them by key); a backend that can do
neither gets them marked failed with "outcome unknown", because sending twice is worse.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.html import strip_tags

from crm.db.raw import InIds, bulk_update_rows
from crm.models import Channel, Consent, ConsentPurpose
from messaging.backends import BaseBackend, OutgoingMessage, SendResult, SendStatus, get_backend
from messaging.backends.base import PermanentGatewayError, RetryableGatewayError
from messaging.models import (
    CampaignStatus,
    Message,
    MessageStatus,
    RateBucket,
    TimeTarget,
)
from messaging.selectors_calls import earliest_by_caps, number_dials, numbers_blocked
from messaging.services.outbox import PROMO_CODE_REDEEMED, unsubscribe_token
from messaging.services.planning import contact_history
from messaging.services.policy import (
    Contact,
    Policy,
    active_policy,
    cap_violation,
    is_quiet,
    next_send_time,
)
from offers.models import PromoCode

log = logging.getLogger(__name__)

# Fields a chunk's outcome writes back.
_RESULT_FIELDS = [
    "status",
    "status_reason",
    "provider_id",
    "error",
    "sent_at",
    "scheduled_for",
    "claimed_until",
    "updated_at",
]


@dataclass
class DispatchResult:
    counts: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def sent(self) -> int:
        return self.counts["sent"]

    def __str__(self) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        return f"{parts or 'nothing due'} in {self.seconds:.1f} s"


def dispatch_due(
    *,
    channels: Sequence[str] | None = None,
    now: dt.datetime | None = None,
    max_messages: int | None = None,
    budget_seconds: float | None = None,
    chunk_size: int | None = None,
) -> DispatchResult:
    """Send every due message (or up to ``max_messages`` / ``budget_seconds``)."""
    started = time.monotonic()
    result = DispatchResult()
    chunk = chunk_size or settings.MESSAGING_DISPATCH_CHUNK
    policy = active_policy()
    backends: dict[str, BaseBackend] = {}
    try:
        result.counts.update(recover_stale_claims(channels=channels, backends=backends))
        while True:
            if max_messages is not None and result.counts.total() >= max_messages:
                break
            if budget_seconds is not None and time.monotonic() - started > budget_seconds:
                break
            at = now or timezone.now()
            size = (
                chunk if max_messages is None else min(chunk, max_messages - result.counts.total())
            )
            claimed = _claim(channels=channels, now=at, limit=size)
            if not claimed:
                break
            result.counts.update(_send_chunk(claimed, policy=policy, now=at, backends=backends))
    finally:
        for backend in backends.values():
            backend.close()
    result.seconds = time.monotonic() - started
    return result


def _backend(channel: str, backends: dict[str, BaseBackend]) -> BaseBackend:
    if channel not in backends:
        backend = get_backend(channel)
        backend.open()
        backends[channel] = backend
    return backends[channel]


def _due(channels: Sequence[str] | None, now: dt.datetime) -> Any:
    queryset = Message.objects.filter(status=MessageStatus.PLANNED, scheduled_for__lte=now)
    if channels:
        queryset = queryset.filter(channel__in=list(channels))
    # A paused campaign's messages wait; they are not lost.
    return queryset.exclude(run__campaign__status=CampaignStatus.PAUSED)


def _claim(*, channels: Sequence[str] | None, now: dt.datetime, limit: int) -> list[Message]:
    lease = now + dt.timedelta(seconds=settings.MESSAGING_CLAIM_SECONDS)
    with transaction.atomic():
        queryset = _due(channels, now).order_by("scheduled_for", "pk")
        if connection.features.has_select_for_update_skip_locked:
            queryset = queryset.select_for_update(skip_locked=True, of=("self",))
        ids = list(queryset.values_list("pk", flat=True)[:limit])
        if not ids:
            return []
        Message.objects.filter(InIds("id", ids)).update(
            status=MessageStatus.QUEUED,
            claimed_until=lease,
            attempts=F("attempts") + 1,
            updated_at=now,
        )
    return list(
        Message.objects.filter(InIds("id", ids))
        .select_related("client", "run__campaign")
        .only(
            "id",
            "client_id",
            "channel",
            "recipient",
            "subject",
            "text",
            "promo_code",
            "offer_id",
            "status",
            "attempts",
            "scheduled_for",
            "expires_at",
            "is_transactional",
            "idempotency_key",
            "run_id",
            "client__time_zone",
            "run__campaign__throttle_per_second",
        )
        .order_by("scheduled_for", "pk")
    )


def consents_in_force(messages: Sequence[Message]) -> set[tuple[int, str]]:
    """The (client, channel) marketing consents in force, locked against change until commit."""
    pairs = {(m.client_id, m.channel) for m in messages if not m.is_transactional}
    if not pairs:
        return set()
    clients = sorted({c for c, _ in pairs})
    channels = sorted({ch for _, ch in pairs})
    if connection.vendor == "postgresql":
        # FOR SHARE: a concurrent withdrawal waits for this chunk's commit (see module doc).
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT client_id, channel, is_granted FROM crm_consent WHERE purpose = %s "
                "AND client_id = ANY(%s) AND channel = ANY(%s) FOR SHARE",
                [ConsentPurpose.MARKETING.value, clients, channels],
            )
            rows = cursor.fetchall()
    else:  # SQLite: the IMMEDIATE transaction already excludes every other writer.
        rows = list(
            Consent.objects.filter(
                client_id__in=clients, channel__in=channels, purpose=ConsentPurpose.MARKETING
            ).values_list("client_id", "channel", "is_granted")
        )
    return {(client, channel) for client, channel, granted in rows if granted}


def promo_codes_redeemed(messages: Sequence[Message]) -> set[str]:
    """The chunk's promo codes already redeemed; on PostgreSQL every code row of the chunk is
    locked ``FOR SHARE`` until commit, so a redemption (``FOR UPDATE``) waits for the send."""
    codes = sorted({m.promo_code for m in messages if m.promo_code})
    if not codes:
        return set()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # Every row, redeemed or not: a redemption (FOR UPDATE) waits for this send.
            cursor.execute(
                f"SELECT code, redeemed_at IS NOT NULL FROM {PromoCode._meta.db_table} "
                "WHERE code = ANY(%s::text[]) FOR SHARE",
                [codes],
            )
            return {code for code, redeemed in cursor.fetchall() if redeemed}
    return set(  # SQLite: the IMMEDIATE transaction already excludes every other writer.
        PromoCode.objects.filter(code__in=codes, redeemed_at__isnull=False).values_list(
            "code", flat=True
        )
    )


def _outgoing(message: Message) -> OutgoingMessage:
    if message.channel != Channel.EMAIL:
        return OutgoingMessage(
            id=message.pk,
            idempotency_key=message.idempotency_key,
            channel=message.channel,
            to=message.recipient,
            text=message.text,
        )
    html = message.text
    headers: dict[str, str] = {}
    text = strip_tags(html).strip()
    if not message.is_transactional:
        url = f"{settings.PUBLIC_BASE_URL.rstrip('/')}/u/{unsubscribe_token(message.pk)}"
        headers = {
            "List-Unsubscribe": f"<{url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
        html = f'{html}<p style="font-size:small"><a href="{url}">Отписаться / Unsubscribe</a></p>'
        text = f"{text}\n\n--\nОтписаться / Unsubscribe: {url}"
    return OutgoingMessage(
        id=message.pk,
        idempotency_key=message.idempotency_key,
        channel=message.channel,
        to=message.recipient,
        subject=message.subject,
        text=text,
        html=html,
        headers=headers,
    )


def _send_chunk(
    messages: list[Message], *, policy: Policy, now: dt.datetime, backends: dict[str, BaseBackend]
) -> Counter[str]:
    counts: Counter[str] = Counter()
    by_channel: dict[str, list[Message]] = defaultdict(list)
    for message in messages:
        by_channel[message.channel].append(message)
    # Rates are waited for before the transaction, so no lock is held while sleeping.
    for channel, group in by_channel.items():
        _throttle(_backend(channel, backends), group)
    with transaction.atomic():
        granted = consents_in_force(messages)
        used = promo_codes_redeemed(messages)
        numbers = [m.recipient for m in messages if m.channel == Channel.CALL]
        blocked = numbers_blocked(numbers)
        # First attempts and retries alike count against the number's caps.
        dials = number_dials(numbers, now=now, lock=True)
        ready: list[Message] = []
        verdicts: dict[int, str] = {}
        for message in messages:
            verdict = _recheck(message, policy, now, granted, used, blocked, dials)
            if verdict:
                verdicts[message.pk] = verdict
            else:
                ready.append(message)
        deferred = [m for m in messages if verdicts.get(m.pk) == "deferred"]
        for message in _deferred_within_caps(deferred, policy, now):
            verdicts[message.pk] = str(message.status)
        counts.update(verdicts.values())
        ready_ids = {m.pk for m in ready}
        for channel, group in by_channel.items():
            sendable = [m for m in group if m.pk in ready_ids]
            if sendable:
                counts.update(_deliver(_backend(channel, backends), sendable, now))
        bulk_update_rows(Message, messages, _RESULT_FIELDS)
    # Receipts the gateway sent meanwhile are applied now that the Messages are "sent", outside
    # the send transaction (which they would only lengthen, and in which they could not apply).
    for channel in by_channel:
        _backend(channel, backends).after_send()
    return counts


def _recheck(
    message: Message,
    policy: Policy,
    now: dt.datetime,
    granted: set[tuple[int, str]],
    used: set[str],
    blocked: set[str],
    dials: dict[str, list[dt.datetime]],
) -> str:
    """Right before sending: consent, a promo code used meanwhile, expiry, blocked number, quiet
    hours, a call's per-number caps. Returns the verdict for a message that must not go now (''
    for one that may), having set its new state. A call let through is added to ``dials``, so
    the chunk's next call to the same number counts it."""
    message.updated_at = now
    message.claimed_until = None
    if not message.is_transactional and (message.client_id, message.channel) not in granted:
        message.status = MessageStatus.CANCELLED
        message.status_reason = "no consent at send time"
        return "cancelled"
    if message.promo_code and message.promo_code in used:
        # Redeemed since planning: the client has taken this offer (invariant 6).
        message.status = MessageStatus.CANCELLED
        message.status_reason = PROMO_CODE_REDEEMED
        return "cancelled"
    if message.expires_at is not None and message.expires_at <= now:
        message.status = MessageStatus.EXPIRED
        message.status_reason = "offer expired"
        return "expired"
    if message.channel == Channel.CALL and message.recipient in blocked:
        message.status = MessageStatus.CANCELLED
        message.status_reason = "number blocked"
        return "cancelled"
    time_zone = str(message.client.time_zone)
    if not message.is_transactional and is_quiet(
        policy, channel=message.channel, time_zone=time_zone, at=now
    ):
        # Dispatch ran late (or the policy changed): wait for the next opening, or drop.
        opening = next_send_time(policy, channel=message.channel, time_zone=time_zone, earliest=now)
        return _defer(message, opening, expired="the next allowed time", deferred="quiet hours")
    if message.channel == Channel.CALL:
        return _recheck_caps(message, policy, now, dials)
    return ""


def _recheck_caps(
    message: Message, policy: Policy, now: dt.datetime, dials: dict[str, list[dt.datetime]]
) -> str:
    """The number's daily and rolling-week caps: wait until a call fits them (inside the call
    window), or drop the call if its offer ends first."""
    history = dials.setdefault(message.recipient, [])
    allowed = earliest_by_caps(history, now)
    if allowed == now:
        history.append(now)
        return ""
    if allowed is not None and not message.is_transactional:
        allowed = next_send_time(
            policy,
            channel=Channel.CALL,
            time_zone=str(message.client.time_zone),
            earliest=allowed,
            target=TimeTarget.ASAP,
        )
    return _defer(
        message,
        allowed,
        expired="the number's call caps allow a call",
        deferred="the number's daily or weekly call cap",
    )


def _defer(message: Message, until: dt.datetime | None, *, expired: str, deferred: str) -> str:
    """Put a message back in the plan for ``until``, or drop it when its offer ends first (or
    no time fits at all)."""
    if until is None or (message.expires_at is not None and until >= message.expires_at):
        message.status = MessageStatus.EXPIRED
        message.status_reason = f"offer expires before {expired}"
        return "expired"
    message.status = MessageStatus.PLANNED
    message.scheduled_for = until
    message.status_reason = f"deferred: {deferred}"
    return "deferred"


def _deferred_within_caps(
    deferred: Sequence[Message], policy: Policy, now: dt.datetime
) -> list[Message]:
    """The plan kept each client's caps and gaps at the times it chose; a message deferred to a
    later time must keep them there too (two messages a gap apart must not end up closer). One
    that no longer fits waits further, for the first allowed time that does, or is dropped if
    its offer ends first; returns the dropped ones. One query. Calls keep their own rules (the
    number's daily and weekly caps, the retry schedule): a retry is a new row of the same call,
    which a gap between messages would forbid."""
    marketing = sorted(
        (m for m in deferred if not m.is_transactional and m.channel != Channel.CALL),
        key=lambda m: m.scheduled_for,
    )
    if not marketing:
        return []
    history = contact_history(
        sorted({m.client_id for m in marketing}),
        now,
        policy,
        max(m.scheduled_for for m in marketing),
        exclude=[m.pk for m in marketing],
    )
    dropped = []
    for message in marketing:
        contacts = history[message.client_id]
        if cap_violation(
            policy,
            channel=message.channel,
            offer_id=message.offer_id,
            at=message.scheduled_for,
            history=contacts,
        ):
            fits = _first_time_within_caps(message, policy, contacts)
            verdict = _defer(
                message, fits, expired="a time within its caps", deferred="quiet hours and caps"
            )
            if verdict != "deferred":
                dropped.append(message)
                continue
        contacts.append(Contact(message.scheduled_for, message.channel, message.offer_id))
    return dropped


def _first_time_within_caps(
    message: Message, policy: Policy, contacts: Sequence[Contact]
) -> dt.datetime | None:
    """The first time after the message's own, inside its channel's hours, at which it breaks
    no cap or gap: caps only free up when an earlier contact leaves a window, so the times to
    try are those moments."""
    effective = policy.for_offer(message.offer_id)
    windows = {
        effective.min_gap,
        effective.total_window,
        effective.channels[message.channel].window,
    }
    cap = effective.offer_cap(message.offer_id)
    if cap is not None:
        windows.add(cap.window)
    start = message.scheduled_for
    moments = sorted({c.at + w for c in contacts for w in windows if c.at + w > start})
    for earliest in moments:
        at = next_send_time(
            policy,
            channel=message.channel,
            time_zone=str(message.client.time_zone),
            earliest=earliest,
        )
        if at is None or (message.expires_at is not None and at >= message.expires_at):
            return None
        violation = cap_violation(
            policy, channel=message.channel, offer_id=message.offer_id, at=at, history=contacts
        )
        if violation is None:
            return at
    return None


def _deliver(backend: BaseBackend, group: list[Message], now: dt.datetime) -> Counter[str]:
    counts: Counter[str] = Counter()
    try:
        results = backend.send_messages([_outgoing(m) for m in group])
    except RetryableGatewayError as exc:
        results = [SendResult(m.pk, SendStatus.RETRY, error=str(exc)[:500]) for m in group]
    except PermanentGatewayError as exc:
        results = [SendResult(m.pk, SendStatus.FAILED, error=str(exc)[:500]) for m in group]
    by_id = {r.message_id: r for r in results}
    for message in group:
        outcome = by_id.get(message.pk) or SendResult(
            message.pk, SendStatus.RETRY, error="no result from the backend"
        )
        counts[_apply(message, outcome, now)] += 1
    return counts


def _apply(message: Message, result: SendResult, now: dt.datetime) -> str:
    if result.status == SendStatus.SENT:
        message.status = (
            MessageStatus.DIALING if message.channel == Channel.CALL else MessageStatus.SENT
        )
        message.provider_id = result.provider_id[:100]
        message.sent_at = now
        message.error = ""
        message.status_reason = ""
        return "sent"
    message.error = result.error
    if result.status == SendStatus.RETRY and message.attempts < settings.MESSAGING_MAX_ATTEMPTS:
        backoff = result.retry_after or 30 * 2 ** (message.attempts - 1)
        message.status = MessageStatus.PLANNED
        message.scheduled_for = now + dt.timedelta(seconds=backoff)
        message.status_reason = "retry after a gateway error"
        return "retried"
    message.status = MessageStatus.FAILED
    message.status_reason = (
        "gateway refused" if result.status == SendStatus.FAILED else "too many attempts"
    )
    return "failed"


# Rate limits ----------------------------------------------------------------------------------


def _throttle(backend: BaseBackend, group: Sequence[Message]) -> None:
    """Wait for the backend's and each campaign's rate, shared by every worker (token buckets
    in the database)."""
    wait = 0.0
    if backend.rate_limit:
        wait = max(wait, rate_acquire(f"backend:{backend.channel}", len(group), backend.rate_limit))
    per_campaign: Counter[tuple[int, int]] = Counter()
    for message in group:
        if message.run_id and message.run is not None:
            campaign = message.run.campaign
            per_campaign[(campaign.pk, campaign.throttle_per_second)] += 1
    for (campaign_id, rate), count in per_campaign.items():
        if rate:
            wait = max(wait, rate_acquire(f"campaign:{campaign_id}", count, float(rate)))
    if wait > 0:
        time.sleep(wait)


def rate_acquire(key: str, tokens: int, rate: float) -> float:
    """Take ``tokens`` from the bucket ``key`` refilled at ``rate`` per second (burst: one
    second's worth); returns how long to wait before using them. Tokens may go negative: that
    is a reservation, and the next caller waits for it too."""
    now = timezone.now()
    with transaction.atomic():
        bucket, _created = RateBucket.objects.select_for_update().get_or_create(
            key=key, defaults={"tokens": rate, "updated_at": now}
        )
        elapsed = max((now - bucket.updated_at).total_seconds(), 0.0)
        available = min(rate, bucket.tokens + elapsed * rate)
        remaining = available - tokens
        RateBucket.objects.filter(pk=key).update(tokens=remaining, updated_at=now)
    return 0.0 if remaining >= 0 else -remaining / rate


# Crash recovery ---------------------------------------------------------------------------------


def recover_stale_claims(
    *, channels: Sequence[str] | None = None, backends: dict[str, BaseBackend] | None = None
) -> Counter[str]:
    """Settle messages whose worker died between claiming and recording them."""
    backends = {} if backends is None else backends
    counts: Counter[str] = Counter()
    now = timezone.now()
    stale = Message.objects.filter(status=MessageStatus.QUEUED, claimed_until__lt=now)
    if channels:
        stale = stale.filter(channel__in=list(channels))
    for channel in stale.values_list("channel", flat=True).distinct():
        with transaction.atomic():
            queryset = stale.filter(channel=channel)
            if connection.features.has_select_for_update_skip_locked:
                queryset = queryset.select_for_update(skip_locked=True)
            rows = list(queryset.only("id", "idempotency_key", "attempts", "channel")[:5000])
            if not rows:
                continue
            backend = _backend(channel, backends)
            accepted = backend.lookup([m.idempotency_key for m in rows])
            for message in rows:
                message.updated_at = now
                message.claimed_until = None
                if accepted is not None and message.idempotency_key in accepted:
                    message.status = (
                        MessageStatus.DIALING if channel == Channel.CALL else MessageStatus.SENT
                    )
                    message.provider_id = accepted[message.idempotency_key][:100]
                    message.sent_at = now
                    counts["recovered_sent"] += 1
                elif accepted is not None or backend.idempotent:
                    message.status = MessageStatus.PLANNED
                    message.status_reason = "resent after a worker crash"
                    counts["recovered_requeued"] += 1
                else:
                    message.status = MessageStatus.FAILED
                    message.status_reason = "outcome unknown after a worker crash"
                    counts["recovered_unknown"] += 1
            bulk_update_rows(
                Message,
                rows,
                [
                    "status",
                    "status_reason",
                    "provider_id",
                    "sent_at",
                    "claimed_until",
                    "updated_at",
                ],
            )
    if counts:
        log.warning("Recovered stale dispatch claims: %s", dict(counts))
    return counts
