"""Gateway events coming back: store each once, apply delivery reports, receive inbound SMS.

Webhooks and backends call :func:`gateway_events_record` (one INSERT .. ON CONFLICT DO NOTHING
per batch), then hand the apply step to a task. Everything here is set-based: a batch of events
costs a handful of statements, whatever its size.

Delivery reports move a Message forward only (sent -> delivered -> undelivered/failed). A report
that arrives before dispatch has marked its Message sent waits, unprocessed, and is applied by the
next :func:`delivery_reports_apply` (dispatch calls it for the messages it just marked sent, and a
periodic sweep catches the rest), so a fast gateway never races the outbox.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import Field
from django.utils import timezone
from django.utils.translation import gettext

from crm.db.raw import InIds
from crm.models import Channel, Client, ConsentAction, ConsentPurpose, ConsentSource
from crm.phones import normalize_phone
from crm.services import ConsentChange, consent_record_many
from messaging.events import (
    DeliveryReport,
    DeliveryState,
    GatewayEventData,
    InboundSms,
)
from messaging.models import (
    EventKind,
    GatewayEvent,
    Message,
    MessageStatus,
)
from messaging.models import (
    InboundSms as InboundSmsRow,
)

logger = logging.getLogger(__name__)

INSERT_BATCH = 500  # rows per INSERT .. VALUES (SQLite)
PG_INSERT_BATCH = 5000  # rows per INSERT .. SELECT FROM unnest(arrays) (PostgreSQL)
# Reports for ids no Message ever carried (another system's traffic, a purged message) are
# closed after this long, so the sweep does not re-read them forever.
ORPHAN_AFTER = timedelta(hours=24)
STOP_WORDING_VERSION = "inbound-sms-stop"

_STATE_TO_STATUS = {
    DeliveryState.DELIVERED: MessageStatus.DELIVERED,
    DeliveryState.UNDELIVERED: MessageStatus.UNDELIVERED,
    DeliveryState.REJECTED: MessageStatus.FAILED,
}
# Where a Message's status sits on the same scale as DeliveryState.rank.
_STATUS_RANK = {
    MessageStatus.SENT: 0,
    MessageStatus.DELIVERED: 2,
    MessageStatus.UNDELIVERED: 3,
    MessageStatus.FAILED: 3,
}
_WAITING_STATUSES = {MessageStatus.PLANNED, MessageStatus.QUEUED}


@dataclass(frozen=True)
class RecordedEvent:
    id: int
    provider: str
    kind: str
    external_id: str
    sequence: str


# Recording -----------------------------------------------------------------------------------


def _event_row(event: GatewayEventData, now: datetime) -> dict[str, Any]:
    payload = dict(event.payload)
    message_id: int | None = getattr(event, "message_id", None)
    if isinstance(event, DeliveryReport):
        payload.update(state=event.state.value, error=event.error)
    elif isinstance(event, InboundSms):
        payload.update(sender=event.sender, recipient=event.recipient, text=event.text)
    else:  # CallEvent: keep every normalized field, the voice services read them back
        payload.update(
            state=str(event.state),
            direction=str(event.direction),
            from_number=event.from_number,
            to_number=event.to_number,
            extension=event.extension,
            disposition=event.disposition,
            duration=event.duration,
            digits=event.digits,
        )
    return {
        "provider": event.provider[:30],
        "kind": str(event.kind),
        "external_id": str(event.external_id)[:120],
        "sequence": event.key_sequence[:60],
        "occurred_at": event.occurred_at,
        "received_at": now,
        "message_id": message_id,
        "payload": payload,
    }


_RECORD_COLUMNS = (
    "provider",
    "kind",
    "external_id",
    "sequence",
    "occurred_at",
    "received_at",
    "message_id",
    "payload",
)


def _json_value(value: Any) -> Any:
    """What ``json.dumps`` cannot write itself: full-precision timestamps, then Django's rules."""
    if isinstance(value, datetime):
        return value.isoformat()
    return DjangoJSONEncoder().default(value)


@functools.cache
def _pg_record_sql() -> str:
    """``INSERT .. SELECT FROM jsonb_to_recordset(rows) .. ON CONFLICT DO NOTHING RETURNING``.

    The rows go as one JSON document: Python's C encoder writes it, where per-column arrays
    cost the driver a Python call per value, and a webhook stores a few events at a time,
    hundreds of times a second. The Message ids are checked by the same statement (a join):
    a report may name a Message that is gone, or never was ours, and is kept unattached."""
    meta = GatewayEvent._meta
    quote = connection.ops.quote_name
    fields = [
        cast("Field[Any, Any]", meta.get_field("message" if c == "message_id" else c))
        for c in _RECORD_COLUMNS
    ]
    columns = ", ".join(quote(str(f.column)) for f in fields)
    types = ", ".join(
        f"{c} {f.db_type(connection)}" for c, f in zip(_RECORD_COLUMNS, fields, strict=True)
    )
    picked = ", ".join("m.id" if c == "message_id" else f"v.{c}" for c in _RECORD_COLUMNS)
    key = ", ".join(quote(c) for c in ("provider", "kind", "external_id", "sequence"))
    return (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) SELECT {picked} "
        f"FROM jsonb_to_recordset(%s::jsonb) AS v({types}) "
        f"LEFT JOIN {quote(Message._meta.db_table)} AS m ON m.id = v.message_id "
        f"ON CONFLICT ({key}) DO NOTHING RETURNING id, {key}"
    )


def gateway_events_record(*, events: Sequence[GatewayEventData]) -> list[RecordedEvent]:
    """Store events under their unique key; return only those that were new (replays are not).

    On PostgreSQL one ``INSERT .. SELECT FROM jsonb_to_recordset(rows) .. ON CONFLICT DO NOTHING
    RETURNING`` per 5,000 events; on SQLite a query for the Message ids, then one
    ``INSERT .. VALUES`` per 500.
    """
    if not events:
        return []
    now = timezone.now()
    recorded: list[RecordedEvent] = []
    # Two events of one batch with the same key (a receipt read twice) would make PostgreSQL
    # refuse the statement ("cannot affect row a second time"): keep the first.
    rows: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for event in events:
        row = _event_row(event, now)
        rows.setdefault((row["provider"], row["kind"], row["external_id"], row["sequence"]), row)
    unique_rows = list(rows.values())
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            for start in range(0, len(unique_rows), PG_INSERT_BATCH):
                batch = unique_rows[start : start + PG_INSERT_BATCH]
                cursor.execute(_pg_record_sql(), [json.dumps(batch, default=_json_value)])
                recorded.extend(RecordedEvent(*r) for r in cursor.fetchall())
        return recorded
    meta = GatewayEvent._meta
    fields: list[Any] = [
        meta.get_field("message" if c == "message_id" else c) for c in _RECORD_COLUMNS
    ]
    quoted = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    table = connection.ops.quote_name(meta.db_table)
    conflict = ", ".join(
        connection.ops.quote_name(c) for c in ("provider", "kind", "external_id", "sequence")
    )
    returning = f"ON CONFLICT ({conflict}) DO NOTHING RETURNING id, {conflict}"
    # A report may name a Message that is gone (or never was ours): keep it, unattached.
    named = {row["message_id"] for row in unique_rows if row["message_id"] is not None}
    if named:
        existing = set(Message.objects.filter(pk__in=named).values_list("pk", flat=True))
        for row in unique_rows:
            if row["message_id"] not in existing:
                row["message_id"] = None
    with connection.cursor() as cursor:
        for start in range(0, len(unique_rows), INSERT_BATCH):
            batch = unique_rows[start : start + INSERT_BATCH]
            params: list[Any] = []
            for row in batch:
                for column, field in zip(_RECORD_COLUMNS, fields, strict=True):
                    params.append(field.get_db_prep_save(row[column], connection))
            placeholders = ", ".join(["(" + ", ".join(["%s"] * len(fields)) + ")"] * len(batch))
            cursor.execute(
                f"INSERT INTO {table} ({quoted}) VALUES {placeholders} {returning}", params
            )
            recorded.extend(RecordedEvent(*r) for r in cursor.fetchall())
    return recorded


# Delivery reports ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplyResult:
    applied: int  # events that changed or confirmed a Message
    changed: int  # Messages whose status moved
    waiting: int  # events whose Message is not sent yet (or not known yet)
    last_id: int = 0  # the batch's last event, for the next keyset page
    more: bool = False  # the batch was full: there may be more


def delivery_reports_apply(
    *,
    event_ids: Iterable[int] | None = None,
    message_ids: Iterable[int] | None = None,
    provider: str | None = None,
    after_id: int = 0,
    limit: int = 5000,
) -> ApplyResult:
    """Apply stored, unprocessed delivery reports to their Messages (set-based, forward only).

    Narrow the batch to some events, some Messages (dispatch calls this with the ids it has just
    marked sent) or one provider; with none of them, the oldest ``limit`` unprocessed reports.
    """
    events = GatewayEvent.objects.filter(kind=EventKind.DELIVERY_REPORT, processed_at__isnull=True)
    if event_ids is not None:
        events = events.filter(InIds("id", list(event_ids)))
    if message_ids is not None:
        events = events.filter(InIds("message_id", list(message_ids)))
    if provider is not None:
        events = events.filter(provider=provider)
    if after_id:
        events = events.filter(id__gt=after_id)
    rows = list(
        events.order_by("id").values_list(
            "id", "external_id", "message_id", "occurred_at", "payload", "received_at"
        )[:limit]
    )
    if not rows:
        return ApplyResult(0, 0, 0)
    last_id = rows[-1][0]

    # Reports that carry no id of ours are matched through the id the gateway gave at submit.
    unresolved = {ext for _, ext, mid, *_ in rows if mid is None}
    by_provider_id: dict[str, int] = {}
    if unresolved:
        by_provider_id = dict(
            Message.objects.filter(channel=Channel.SMS, provider_id__in=unresolved).values_list(
                "provider_id", "id"
            )
        )
    now = timezone.now()
    resolved_events: list[GatewayEvent] = []
    per_message: dict[int, list[tuple[int, DeliveryState, datetime, str]]] = {}
    orphans: list[int] = []
    waiting = 0
    for event_id, external_id, message_id, occurred_at, payload, received_at in rows:
        if message_id is None:
            message_id = by_provider_id.get(external_id)
            if message_id is None:
                if received_at < now - ORPHAN_AFTER:
                    orphans.append(event_id)
                else:
                    waiting += 1
                continue
            resolved_events.append(GatewayEvent(id=event_id, message_id=message_id))
        state = DeliveryState(payload.get("state", DeliveryState.ACCEPTED))
        per_message.setdefault(message_id, []).append(
            (event_id, state, occurred_at, str(payload.get("error", "")))
        )

    processed: list[int] = list(orphans)
    changed: list[Message] = []
    with transaction.atomic():
        # Locked in id order, so two appliers never deadlock on the same messages.
        messages = {
            m.id: m
            for m in Message.objects.select_for_update()
            .filter(InIds("id", list(per_message)))
            .order_by("id")
            .only("id", "status", "delivered_at", "status_reason")
        }
        for message_id, reports in per_message.items():
            message = messages.get(message_id)
            if message is None:  # deleted since: nothing to move
                processed.extend(r[0] for r in reports)
                continue
            if message.status in _WAITING_STATUSES:
                if min(r[2] for r in reports) < now - ORPHAN_AFTER:
                    processed.extend(r[0] for r in reports)
                else:
                    waiting += len(reports)
                continue
            processed.extend(r[0] for r in reports)
            current_rank = _STATUS_RANK.get(MessageStatus(message.status))
            if current_rank is None:  # cancelled, expired...: a report changes nothing
                continue
            # The furthest state wins; among equals, the latest report.
            _, state, occurred_at, error = max(reports, key=lambda r: (r[1].rank, r[0]))
            target = _STATE_TO_STATUS.get(state)
            if target is None or state.rank <= current_rank:
                continue
            message.status = target
            message.status_reason = (error or gettext("gateway: %(state)s") % {"state": state})[
                :200
            ]
            if target == MessageStatus.DELIVERED:
                message.delivered_at = occurred_at
            message.updated_at = now
            changed.append(message)
        if changed:
            _messages_update(changed, now)
        if resolved_events:
            GatewayEvent.objects.bulk_update(resolved_events, ["message_id"])
        if processed:
            GatewayEvent.objects.filter(InIds("id", processed)).update(processed_at=now)
    return ApplyResult(len(processed), len(changed), waiting, last_id, len(rows) == limit)


def _messages_update(messages: list[Message], now: datetime) -> None:
    """One UPDATE .. FROM unnest(arrays) per 5,000 rows on PostgreSQL: Django's bulk_update builds
    a CASE per row and field, which costs seconds per thousand rows."""
    if connection.vendor != "postgresql":
        Message.objects.bulk_update(
            messages, ["status", "status_reason", "delivered_at", "updated_at"]
        )
        return
    table = connection.ops.quote_name(Message._meta.db_table)
    with connection.cursor() as cursor:
        for start in range(0, len(messages), 5000):
            batch = messages[start : start + 5000]
            cursor.execute(
                f"UPDATE {table} AS m SET status = v.status, status_reason = v.reason, "
                "delivered_at = COALESCE(v.delivered, m.delivered_at), updated_at = %s "
                "FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::timestamptz[]) "
                "AS v(id, status, reason, delivered) WHERE m.id = v.id",
                [
                    now,
                    [m.pk for m in batch],
                    [m.status for m in batch],
                    [m.status_reason for m in batch],
                    [m.delivered_at for m in batch],
                ],
            )


def delivery_reports_record_and_apply(*, reports: Sequence[DeliveryReport]) -> ApplyResult:
    """Store reports once and apply the new ones at once (backends that read receipts inline)."""
    recorded = gateway_events_record(events=reports)
    if not recorded:
        return ApplyResult(0, 0, 0)
    return delivery_reports_apply(event_ids=[r.id for r in recorded])


# Inbound SMS and STOP ------------------------------------------------------------------------


def is_stop_text(text: str) -> bool:
    """The whole text, trimmed of spaces and punctuation, is one of ``SMS_STOP_WORDS``."""
    words = {w.strip().casefold() for w in settings.SMS_STOP_WORDS if w.strip()}
    normalized = " ".join(text.replace("ё", "е").replace("Ё", "Е").split()).strip(" .!,;:-\"'")
    return normalized.casefold() in words


def _stop_key(provider: str, external_id: str) -> str:
    digest = hashlib.sha256(f"{provider}:{external_id}".encode()).hexdigest()[:40]
    return f"sms-stop:{digest}"


@dataclass(frozen=True)
class InboundResult:
    received: list[InboundSmsRow]
    withdrawn_client_ids: list[int]


def inbound_sms_receive(*, messages: Sequence[InboundSms]) -> InboundResult:
    """Store inbound texts once; a STOP word withdraws SMS marketing consent and is confirmed once.

    Replays of the same provider message (same id) change nothing and send nothing.
    """
    recorded = gateway_events_record(events=messages)
    if not recorded:
        return InboundResult([], [])
    new_keys = {(r.provider, r.external_id): r.id for r in recorded}
    fresh = [m for m in messages if (m.provider[:30], m.external_id[:120]) in new_keys]
    phones = {m.external_id: normalize_phone(m.sender) or m.sender for m in fresh}
    clients: dict[str, int] = {}
    known = {p for p in phones.values() if p.startswith("+")}
    if known:
        # The lowest id wins when a number is shared; the others keep their consent.
        for client_id, phone in (
            Client.objects.filter(phone__in=known).order_by("-id").values_list("id", "phone")
        ):
            clients[getattr(phone, "as_e164", None) or str(phone)] = client_id
    rows = [
        InboundSmsRow(
            provider=m.provider[:30],
            sender=phones[m.external_id][:32],
            recipient=m.recipient[:32],
            text=m.text,
            received_at=m.occurred_at,
            client_id=clients.get(phones[m.external_id]),
            is_stop=is_stop_text(m.text),
        )
        for m in fresh
    ]
    stops = [(row, m) for row, m in zip(rows, fresh, strict=True) if row.is_stop and row.client_id]
    withdrawn: list[int] = []
    with transaction.atomic():
        InboundSmsRow.objects.bulk_create(rows)
        if stops:
            consent_record_many(
                changes=[
                    ConsentChange(
                        client_id=row.client_id,
                        channel=Channel.SMS,
                        purpose=ConsentPurpose.MARKETING,
                        action=ConsentAction.WITHDRAWN,
                        source=ConsentSource.INBOUND_SMS,
                        wording_version=STOP_WORDING_VERSION,
                        occurred_at=min(m.occurred_at, timezone.now()),
                        evidence=f"{m.provider}:{m.external_id} {m.text[:60]}",
                        actor_label=row.sender,
                    )
                    for row, m in stops
                    if row.client_id is not None
                ]
            )
            withdrawn = sorted({row.client_id for row, _ in stops if row.client_id is not None})
            # The withdrawal has cancelled their queued SMS (crm's hook, messaging.outbox).
            _confirm_stops(stops)
        GatewayEvent.objects.filter(id__in=list(new_keys.values())).update(
            processed_at=timezone.now()
        )
    return InboundResult(rows, withdrawn)


def _confirm_stops(stops: list[tuple[InboundSmsRow, InboundSms]]) -> None:
    from messaging.services.outbox import transactional_message_create

    text = gettext("You have unsubscribed from our SMS offers. We will not send them again.")
    confirmed: set[int] = set()
    for row, message in stops:
        if row.client_id is None or row.client_id in confirmed:
            continue
        confirmed.add(row.client_id)
        transactional_message_create(
            client_id=row.client_id,
            channel=Channel.SMS,
            recipient=row.sender,
            text=text,
            idempotency_key=_stop_key(message.provider, message.external_id),
        )


def gateway_events_sweep(*, budget_seconds: float = 60.0, limit: int = 5000) -> ApplyResult:
    """Apply every report that waited for its Message to be marked sent (periodic).

    Pages through by id, so reports that still wait never hide newer ones behind them.
    """
    started = time.monotonic()
    applied = changed = waiting = 0
    after_id = 0
    while True:
        result = delivery_reports_apply(after_id=after_id, limit=limit)
        applied, changed, waiting = (
            applied + result.applied,
            changed + result.changed,
            waiting + result.waiting,
        )
        if not result.more or time.monotonic() - started > budget_seconds:
            return ApplyResult(applied, changed, waiting, result.last_id, result.more)
        after_id = result.last_id
