"""Planning: what a campaign run or a trigger firing wants to say -> outbox Messages.

A batch of clients is planned in one transaction with a handful of statements whatever its
size: lock the clients (so concurrent planners, campaign or trigger, take turns per client and
caps hold), read their consents, their counted messages near the planned times and, when
needed, the hours they usually buy in; then choose a channel and a send time for each client in
Python and insert the Messages in one statement. Every client left out is counted under a
reason, which the run shows.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import CharField
from django.db.models.functions import Cast

from crm.db.raw import InIds, db_datetime, pg_int_array
from crm.models import Channel, Client, Consent, ConsentPurpose, ContactTime
from messaging.models import (
    COUNTED_STATUSES,
    Message,
    MessageStatus,
    TimeTarget,
)
from messaging.selectors_calls import numbers_blocked
from messaging.services.policy import Contact, Policy, cap_violation, next_send_time, zone


class Reason:
    """Why a client got no message (keys of ``CampaignRun.excluded``)."""

    NO_CONSENT = "no_consent"
    NO_ADDRESS = "no_address"
    NO_TEXT = "no_text"
    NO_PRODUCT = "no_product"
    NOT_ELIGIBLE = "not_eligible"
    ANONYMIZED = "anonymized"
    NUMBER_BLOCKED = "number_blocked"
    NO_WINDOW = "no_window"
    EXPIRED = "expired_before_window"
    MIN_GAP = "min_gap"
    CHANNEL_CAP = "channel_cap"
    TOTAL_CAP = "total_cap"
    OFFER_CAP = "offer_cap"
    ALREADY_PLANNED = "already_planned"
    NO_PROMO_CODE = "no_promo_code"
    LOWER_PRIORITY = "lower_priority"
    PURCHASED = "purchased"


@dataclass
class Candidate:
    """One client's message-to-be, with its texts per channel (subject, body) already rendered."""

    client_id: int
    texts: dict[str, tuple[str, str]]
    offer_id: int | None = None
    variant_id: int | None = None
    reason: str = ""
    products: list[dict[str, Any]] = field(default_factory=list)
    promo_code: str = ""
    expires_at: dt.datetime | None = None
    not_before: dt.datetime | None = None
    is_control: bool = False
    firing_id: int | None = None
    promo_pool_id: int | None = None


@dataclass(frozen=True)
class Origin:
    """Where messages come from: a campaign run or trigger firings, and how they are sent."""

    channels: Sequence[str]
    key_prefix: str  # "run:<id>" or "trigger:<scenario id>"
    run_id: int | None = None
    prefer_client_channel: bool = True
    target: str = TimeTarget.PREFERRED
    is_transactional: bool = False
    landing_url: str = ""


@dataclass
class BatchOutcome:
    planned: int = 0
    control: int = 0
    excluded: Counter[str] = field(default_factory=Counter)
    messages: list[PlannedMessage] = field(default_factory=list)
    # Why each client left out got no message (triggers record it on the firing).
    reasons: dict[int, str] = field(default_factory=dict)

    def add(self, other: BatchOutcome) -> None:
        self.planned += other.planned
        self.control += other.control
        self.excluded.update(other.excluded)


@dataclass(frozen=True)
class _Person:
    phone: str
    email: str
    time_zone: str
    preferred_channel: str
    preferred_part: str
    anonymized: bool

    def address(self, channel: str) -> str:
        return self.email if channel == Channel.EMAIL else self.phone


def idempotency_key(origin: Origin, candidate: Candidate, channel: str) -> str:
    """One message per (run or firing, client, channel) — DESIGN invariant 2."""
    source = f"firing:{candidate.firing_id}" if candidate.firing_id else origin.key_prefix
    return f"{source}:{candidate.client_id}:{channel}"


def plan_batch(
    *, origin: Origin, candidates: Sequence[Candidate], policy: Policy, now: dt.datetime
) -> BatchOutcome:
    """Write the Messages of one batch. Call inside ``transaction.atomic()``."""
    outcome = BatchOutcome()
    if not candidates:
        return outcome
    ids = sorted({c.client_id for c in candidates})
    people = _lock_and_load(ids)
    channels = [str(c) for c in origin.channels]
    consents = _consents(ids, channels) if not origin.is_transactional else None
    blocked = (
        numbers_blocked(p.phone for p in people.values()) if Channel.CALL in channels else set()
    )
    parts = _learned_parts(ids, people, policy, now) if origin.target == "" else {}
    horizon = max((c.expires_at for c in candidates if c.expires_at), default=None)
    history = contact_history(ids, now, policy, horizon)
    existing = _existing_keys(origin, candidates, channels)

    rows: list[PlannedMessage] = []
    for candidate in candidates:
        person = people.get(candidate.client_id)
        if person is None or person.anonymized:
            outcome.excluded[Reason.ANONYMIZED] += 1
            outcome.reasons[candidate.client_id] = Reason.ANONYMIZED
            continue
        if candidate.is_control:
            key = idempotency_key(origin, candidate, channels[0])
            if key in existing:
                outcome.excluded[Reason.ALREADY_PLANNED] += 1
                outcome.reasons[candidate.client_id] = Reason.ALREADY_PLANNED
                continue
            rows.append(_control_row(origin, candidate, channels[0], key, now))
            outcome.control += 1
            continue
        choice, why = _choose(
            origin, candidate, person, policy, now, consents, blocked, parts, history, existing
        )
        if choice is None:
            outcome.excluded[why] += 1
            outcome.reasons[candidate.client_id] = why
            continue
        channel, at = choice
        history[candidate.client_id].append(Contact(at, channel, candidate.offer_id))
        rows.append(
            _message_row(
                origin,
                candidate,
                person,
                channel,
                at,
                now,
                idempotency_key(origin, candidate, channel),
            )
        )
    rows = _with_promo_codes(rows, candidates, outcome, now)
    outcome.planned = sum(1 for row in rows if row.status == MessageStatus.PLANNED)
    _insert(rows)
    outcome.messages = rows
    return outcome


def _with_promo_codes(
    rows: list[PlannedMessage],
    candidates: Sequence[Candidate],
    outcome: BatchOutcome,
    now: dt.datetime,
) -> list[PlannedMessage]:
    """Give the clients who will get a message their single-use codes (only them, so a pool is
    not spent on clients the policy left out), in place of the code pattern in their texts.
    A client the pool has no code left for gets no message."""
    from offers.models import Offer, PromoPool
    from offers.services import promo_code_assign_many

    pools = {(c.client_id, c.offer_id): c.promo_pool_id for c in candidates if c.promo_pool_id}
    wanted: dict[tuple[int, int | None], list[PlannedMessage]] = defaultdict(list)
    for row in rows:
        pool_id = pools.get((row.client_id, row.offer_id))
        if pool_id and row.status == MessageStatus.PLANNED:
            wanted[(pool_id, row.offer_id)].append(row)
    refused: set[int] = set()
    for (pool_id, offer_id), pending in wanted.items():
        pool = PromoPool.objects.get(pk=pool_id)
        offer = Offer.objects.get(pk=offer_id) if offer_id else None
        codes = promo_code_assign_many(
            pool=pool, client_ids=[m.client_id for m in pending], offer=offer, at=now
        )
        pattern = f"{pool.prefix}{'X' * pool.code_length}"
        for message in pending:
            code = codes.get(message.client_id)
            if code is None:
                refused.add(id(message))
                outcome.excluded[Reason.NO_PROMO_CODE] += 1
                outcome.reasons[message.client_id] = Reason.NO_PROMO_CODE
                continue
            message.promo_code = code
            message.text = message.text.replace(pattern, code)
            message.subject = message.subject.replace(pattern, code)
    return [row for row in rows if id(row) not in refused]


@dataclass(slots=True)
class PlannedMessage:
    """A Message about to be inserted: a plain object, since building thousands of model
    instances costs more than everything else planning does."""

    client_id: int
    channel: str
    idempotency_key: str
    scheduled_for: dt.datetime
    created_at: dt.datetime
    updated_at: dt.datetime
    status: str = MessageStatus.PLANNED
    run_id: int | None = None
    firing_id: int | None = None
    offer_id: int | None = None
    variant_id: int | None = None
    is_transactional: bool = False
    recipient: str = ""
    subject: str = ""
    text: str = ""
    reason: str = ""
    products: list[dict[str, Any]] = field(default_factory=list)
    promo_code: str = ""
    link_token: str | None = None
    expires_at: dt.datetime | None = None
    status_reason: str = ""
    attempts: int = 0
    claimed_until: dt.datetime | None = None
    provider_id: str = ""
    error: str = ""
    sent_at: dt.datetime | None = None
    delivered_at: dt.datetime | None = None
    clicked_at: dt.datetime | None = None
    call_duration: int | None = None
    dtmf: str = ""


_COPY_FIELDS = [f for f in Message._meta.concrete_fields if not f.primary_key]


def _insert(rows: list[PlannedMessage]) -> None:
    """Insert the batch's messages: COPY on PostgreSQL (several times faster than a multi-row
    INSERT for thousands of rows), ``bulk_create`` elsewhere. No conflict can occur: every key
    holds the client's id, and the clients are locked by this transaction (``_lock_and_load``)."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        Message.objects.bulk_create(
            [Message(**{f.attname: getattr(row, f.attname) for f in _COPY_FIELDS}) for row in rows],
            batch_size=2000,
        )
        return
    columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in _COPY_FIELDS)
    table = connection.ops.quote_name(Message._meta.db_table)
    json_fields = {f.attname for f in _COPY_FIELDS if f.get_internal_type() == "JSONField"}
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(
                [
                    json.dumps(getattr(row, f.attname), ensure_ascii=False)
                    if f.attname in json_fields
                    else getattr(row, f.attname)
                    for f in _COPY_FIELDS
                ]
            )


def _channel_order(origin: Origin, person: _Person) -> list[str]:
    order = [str(c) for c in origin.channels]
    if origin.prefer_client_channel and person.preferred_channel in order:
        order.remove(person.preferred_channel)
        order.insert(0, person.preferred_channel)
    return order


def _choose(
    origin: Origin,
    candidate: Candidate,
    person: _Person,
    policy: Policy,
    now: dt.datetime,
    consents: set[tuple[int, str]] | None,
    blocked: set[str],
    parts: dict[int, str],
    history: dict[int, list[Contact]],
    existing: set[str],
) -> tuple[tuple[str, dt.datetime] | None, str]:
    """The first channel in fallback order that may carry the message, with its send time; or
    None and the reason the most wanted channel could not."""
    first_reason = ""
    earliest = max(now, candidate.not_before or now)
    part = person.preferred_part or parts.get(candidate.client_id, "")
    for channel in _channel_order(origin, person):
        reason = ""
        at: dt.datetime | None = None
        if idempotency_key(origin, candidate, channel) in existing:
            reason = Reason.ALREADY_PLANNED
        elif not candidate.texts.get(channel, ("", ""))[1]:
            reason = Reason.NO_TEXT
        elif not person.address(channel):
            reason = Reason.NO_ADDRESS
        elif consents is not None and (candidate.client_id, channel) not in consents:
            reason = Reason.NO_CONSENT
        elif channel == Channel.CALL and person.phone in blocked:
            reason = Reason.NUMBER_BLOCKED
        else:
            at = next_send_time(
                policy,
                channel=channel,
                time_zone=person.time_zone,
                earliest=earliest,
                target=origin.target,
                part=part,
            )
            if at is None:
                reason = Reason.NO_WINDOW
            elif candidate.expires_at is not None and at >= candidate.expires_at:
                reason = Reason.EXPIRED
            elif not origin.is_transactional:
                reason = (
                    cap_violation(
                        policy,
                        channel=channel,
                        offer_id=candidate.offer_id,
                        at=at,
                        history=history[candidate.client_id],
                    )
                    or ""
                )
        if not reason and at is not None:
            return (channel, at), ""
        first_reason = first_reason or reason
    return None, first_reason


def _with_link(text: str, url: str, html: bool) -> str:
    if not url:
        return text
    if html:
        url = f'<a href="{url}">{url}</a>'
    if "[link]" in text:
        return text.replace("[link]", url)
    return f"{text}<p>{url}</p>" if html else f"{text} {url}"


def _message_row(
    origin: Origin,
    candidate: Candidate,
    person: _Person,
    channel: str,
    at: dt.datetime,
    now: dt.datetime,
    key: str,
) -> PlannedMessage:
    subject, text = candidate.texts[channel]
    token = secrets.token_urlsafe(12) if origin.landing_url else None
    if token:
        url = f"{settings.PUBLIC_BASE_URL.rstrip('/')}/o/{token}"
        text = _with_link(text, url, html=channel == Channel.EMAIL)
    return PlannedMessage(
        client_id=candidate.client_id,
        channel=channel,
        run_id=origin.run_id,
        firing_id=candidate.firing_id,
        offer_id=candidate.offer_id,
        variant_id=candidate.variant_id,
        is_transactional=origin.is_transactional,
        recipient=person.address(channel),
        subject=subject,
        text=text,
        reason=candidate.reason,
        products=candidate.products,
        promo_code=candidate.promo_code,
        link_token=token,
        scheduled_for=at,
        expires_at=candidate.expires_at,
        status=MessageStatus.PLANNED,
        idempotency_key=key,
        created_at=now,
        updated_at=now,
    )


def _control_row(
    origin: Origin, candidate: Candidate, channel: str, key: str, now: dt.datetime
) -> PlannedMessage:
    """The holdout client's record: never sent, it is what attribution compares against."""
    return PlannedMessage(
        client_id=candidate.client_id,
        channel=channel,
        run_id=origin.run_id,
        firing_id=candidate.firing_id,
        offer_id=candidate.offer_id,
        recipient="",
        text="",
        reason=candidate.reason,
        products=candidate.products,
        scheduled_for=now,
        expires_at=candidate.expires_at,
        status=MessageStatus.CONTROL,
        idempotency_key=key,
        created_at=now,
        updated_at=now,
    )


# Reads under the batch's lock -------------------------------------------------------------------


def _lock_and_load(ids: Sequence[int]) -> dict[int, _Person]:
    """Lock the batch's clients in id order (no deadlocks between planners), and read them.

    ``FOR NO KEY UPDATE`` makes a second planner — another run, a trigger — wait for this
    batch's commit before it counts the same clients' messages, so caps hold. It does not block
    foreign-key checks (purchases being written). SQLite serializes writers anyway."""
    queryset = Client.objects.filter(InIds("pk", ids)).order_by("pk")
    if connection.features.has_select_for_update:
        queryset = queryset.select_for_update(no_key=True)
    # The phone as stored (E.164 text): parsing 5,000 numbers into objects costs seconds.
    rows = queryset.annotate(phone_e164=Cast("phone", CharField())).values_list(
        "id",
        "phone_e164",
        "email",
        "time_zone",
        "preferred_channel",
        "preferred_contact_time",
        "is_anonymized",
    )
    return {
        cid: _Person(phone or "", email or "", str(tz), pref_channel, pref_time, anon)
        for cid, phone, email, tz, pref_channel, pref_time, anon in rows
    }


def _consents(ids: Sequence[int], channels: Sequence[str]) -> set[tuple[int, str]]:
    return set(
        Consent.objects.filter(
            InIds("client_id", ids),
            channel__in=channels,
            purpose=ConsentPurpose.MARKETING,
            is_granted=True,
        ).values_list("client_id", "channel")
    )


def contact_history(
    ids: Sequence[int],
    now: dt.datetime,
    policy: Policy,
    horizon: dt.datetime | None,
    *,
    exclude: Sequence[int] = (),
) -> dict[int, list[Contact]]:
    """Each client's counted marketing messages that could fall in a cap window or gap of a
    message planned from now to ``horizon`` (or the search limit); ``exclude``: message ids to
    leave out (the ones being placed)."""
    reach = policy.widest_window
    last = max(horizon or now, now + dt.timedelta(days=15))
    counted = Message.objects.filter(
        InIds("client_id", ids),
        status__in=COUNTED_STATUSES,
        is_transactional=False,
        scheduled_for__gt=now - reach,
        scheduled_for__lt=last + reach,
    )
    if exclude:
        counted = counted.exclude(InIds("id", exclude))
    rows = counted.values_list("client_id", "scheduled_for", "sent_at", "channel", "offer_id")
    history: dict[int, list[Contact]] = defaultdict(list)
    for client_id, scheduled, sent, channel, offer_id in rows:
        history[client_id].append(Contact(sent or scheduled, channel, offer_id))
    return history


def _existing_keys(
    origin: Origin, candidates: Sequence[Candidate], channels: Sequence[str]
) -> set[str]:
    keys = [idempotency_key(origin, c, ch) for c in candidates for ch in channels]
    return set(
        Message.objects.filter(InIds("idempotency_key", keys, text=True)).values_list(
            "idempotency_key", flat=True
        )
    )


_PART_OF_HOUR = [
    (range(5, 12), ContactTime.MORNING),
    (range(12, 17), ContactTime.AFTERNOON),
    (range(17, 24), ContactTime.EVENING),
]


def _part(hour: int) -> str:
    for hours, part in _PART_OF_HOUR:
        if hour in hours:
            return part
    return ""


def _learned_parts(
    ids: Sequence[int], people: dict[int, _Person], policy: Policy, now: dt.datetime
) -> dict[int, str]:
    """The part of the day each client (without a preference of their own) buys in most often
    over the last year, from one grouped query on purchase hours (UTC, shifted to local)."""
    if not policy.learn_preferred_time:
        return {}
    wanted = [cid for cid in ids if cid in people and not people[cid].preferred_part]
    if not wanted:
        return {}
    since = db_datetime(now - dt.timedelta(days=365))
    if connection.vendor == "postgresql":
        hour = "EXTRACT(HOUR FROM purchased_at AT TIME ZONE 'UTC')::int"
        ids_sql = "client_id = ANY(%s::bigint[])"
        params: list[Any] = [pg_int_array(wanted)]
    else:
        hour = "CAST(strftime('%%H', purchased_at) AS INTEGER)"
        ids_sql = f"client_id IN ({','.join(['%s'] * len(wanted))})"
        params = list(wanted)
    sql = (
        f"SELECT client_id, {hour} AS h, COUNT(*) FROM crm_purchase "
        f"WHERE {ids_sql} AND purchased_at >= %s GROUP BY client_id, h"
    )
    votes: dict[int, Counter[str]] = defaultdict(Counter)
    offsets: dict[str, float] = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, since])
        for client_id, utc_hour, count in cursor.fetchall():
            tz_name = people[client_id].time_zone
            if tz_name not in offsets:
                offset = zone(tz_name).utcoffset(now.replace(tzinfo=None))
                offsets[tz_name] = offset.total_seconds() / 3600 if offset else 0.0
            local_hour = int((utc_hour + offsets[tz_name]) % 24)
            part = _part(local_hour)
            if part:
                votes[client_id][part] += count
    return {cid: counter.most_common(1)[0][0] for cid, counter in votes.items()}
