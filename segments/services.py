"""Use cases that change segments: save with validated rules, membership snapshots, static lists.

The one place that writes ``SegmentMember`` and ``SegmentSizeHistory``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from crm.db.raw import db_datetime
from crm.models import Client
from crm.phones import normalize_phone
from segments.compiler import base_queryset, compile_rules
from segments.models import Segment, SegmentKind, SegmentMember, SegmentSizeHistory
from segments.rules import validate_rules

MEMBER_TABLE = SegmentMember._meta.db_table


def segment_save(
    *,
    segment: Segment,
    rules: Any = None,
    actor: Any = None,
) -> Segment:
    """Create or update a segment; its rules are validated against the catalog first.

    ``rules=None`` keeps (and re-validates) the rules already on the object. Raises
    ``segments.rules.RulesError`` naming the wrong rule.
    """
    tree = validate_rules(segment.rules if rules is None else rules, segment_id=segment.pk)
    segment.rules = tree if segment.kind == SegmentKind.RULES else {"match": "all", "rules": []}
    if segment.pk is None and getattr(actor, "is_authenticated", False):
        segment.created_by = actor
    segment.full_clean(exclude=["rules", "created_by"])
    segment.save()
    return segment


# Snapshots ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefreshResult:
    segment_id: int
    size: int
    added: int
    removed: int
    duration_ms: int
    measured_at: dt.datetime


def segment_refresh_membership(
    *, segment: Segment | int, now: dt.datetime | None = None
) -> RefreshResult:
    """Bring a segment's membership snapshot up to date and record its size.

    For a rule segment: one DELETE of members no longer matching and one INSERT ... SELECT of
    new ones, both from the compiled query, plus a count; concurrent refreshes of one segment
    queue on its row lock. A static segment's list is its membership: only the size is recorded.
    """
    started = time.monotonic()
    now = now or timezone.now()
    with transaction.atomic():
        segment_id = segment if isinstance(segment, int) else segment.pk
        locked = Segment.objects.select_for_update().get(pk=segment_id)
        added = removed = 0
        if locked.kind == SegmentKind.RULES:
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL jit = off")  # see compiler.analytic_session
            compiled = compile_rules(locked.rules, now=now, segment_id=locked.pk).values("id")
            sql, params = compiled.query.sql_with_params()
            with connection.cursor() as cursor:
                cursor.execute(
                    f"DELETE FROM {MEMBER_TABLE} WHERE segment_id = %s AND NOT EXISTS (SELECT 1 "
                    f"FROM ({sql}) matching WHERE matching.id = {MEMBER_TABLE}.client_id)",
                    [locked.pk, *params],
                )
                removed = max(cursor.rowcount, 0)
                # ON CONFLICT, not NOT EXISTS: an anti-join against the table being filled
                # rereads its growing heap per row when its statistics say "empty".
                cursor.execute(
                    f"INSERT INTO {MEMBER_TABLE} (segment_id, client_id, added_at) "
                    f"SELECT %s, matching.id, %s FROM ({sql}) matching WHERE true "
                    "ON CONFLICT (segment_id, client_id) DO NOTHING",
                    [locked.pk, db_datetime(now), *params],
                )
                added = max(cursor.rowcount, 0)
        size = SegmentMember.objects.filter(segment_id=locked.pk).count()
        duration_ms = int((time.monotonic() - started) * 1000)
        SegmentSizeHistory.objects.create(
            segment_id=locked.pk,
            measured_at=now,
            size=size,
            added=added,
            removed=removed,
            duration_ms=duration_ms,
        )
        Segment.objects.filter(pk=locked.pk).update(member_count=size, refreshed_at=now)
    if isinstance(segment, Segment):
        segment.member_count, segment.refreshed_at = size, now
    return RefreshResult(locked.pk, size, added, removed, duration_ms, now)


# Static lists -------------------------------------------------------------------------------------


def _require_static(segment: Segment) -> None:
    if segment.kind != SegmentKind.STATIC:
        raise ValidationError(_("Clients are added by hand only to static segments."))


def segment_add_clients(
    *, segment: Segment, clients: QuerySet[Client] | Iterable[int], now: dt.datetime | None = None
) -> int:
    """Add clients (a queryset, added in one INSERT ... SELECT, or ids) to a static segment;
    returns how many were new. Anonymized clients are skipped."""
    _require_static(segment)
    now = now or timezone.now()
    if isinstance(clients, QuerySet):
        members: QuerySet[Any, Any] = clients.values("pk")
        batches = [base_queryset().filter(pk__in=members).values("id")]
    else:
        ids = sorted(set(clients))
        batches = [
            base_queryset().filter(pk__in=ids[start : start + 2000]).values("id")
            for start in range(0, len(ids), 2000)
        ]
    added = 0
    with transaction.atomic(), connection.cursor() as cursor:
        for chosen in batches:
            sql, params = chosen.query.sql_with_params()
            cursor.execute(
                f"INSERT INTO {MEMBER_TABLE} (segment_id, client_id, added_at) "
                f"SELECT %s, chosen.id, %s FROM ({sql}) chosen WHERE true "
                "ON CONFLICT (segment_id, client_id) DO NOTHING",
                [segment.pk, db_datetime(now), *params],
            )
            added += max(cursor.rowcount, 0)
        _record_static_size(segment, now)
    return added


def segment_remove_clients(*, segment: Segment, client_ids: Iterable[int]) -> int:
    _require_static(segment)
    with transaction.atomic():
        removed, _counts = SegmentMember.objects.filter(
            segment=segment, client_id__in=list(client_ids)
        ).delete()
        _record_static_size(segment, timezone.now())
    return removed


def _record_static_size(segment: Segment, now: dt.datetime) -> None:
    size = SegmentMember.objects.filter(segment=segment).count()
    Segment.objects.filter(pk=segment.pk).update(member_count=size, refreshed_at=now)
    segment.member_count, segment.refreshed_at = size, now


IDENTIFIERS = ("auto", "phone", "email", "external_id")


@dataclass
class ImportResult:
    lines: int = 0
    matched: int = 0
    added: int = 0
    not_found: list[str] = field(default_factory=list)


def _identifiers(text: str) -> list[str]:
    """The first column of each non-empty line (CSV or one value per line); no header needed."""
    values = []
    for row in csv.reader(io.StringIO(text), delimiter=_sniff_delimiter(text)):
        if row and row[0].strip():
            values.append(row[0].strip())
    return values


def _sniff_delimiter(text: str) -> str:
    head = text[:2000]
    return ";" if head.count(";") > head.count(",") else ","


def segment_import_static(
    *,
    segment: Segment,
    text: str,
    identifier: str = "auto",
    chunk_size: int = 2000,
) -> ImportResult:
    """Add the clients listed in a file (phones, e-mails or external ids, one per line, or the
    first CSV column) to a static segment. Lookups go in chunks; unknown values are reported."""
    _require_static(segment)
    if identifier not in IDENTIFIERS:
        raise ValidationError(_("Unknown identifier kind %(kind)s.") % {"kind": identifier})
    result = ImportResult()
    values = _identifiers(text)
    result.lines = len(values)
    keyed: dict[str, dict[str, str]] = {"phone": {}, "email": {}, "external_id": {}}
    for raw in values:
        kind = identifier
        if kind == "auto":
            kind = "email" if "@" in raw else ("phone" if normalize_phone(raw) else "external_id")
        if kind == "phone":
            key = normalize_phone(raw)
            if key is None:
                result.not_found.append(raw)
                continue
        elif kind == "email":
            key = raw.lower()
        else:
            key = raw
        keyed[kind][key] = raw
    ids: set[int] = set()
    for kind, wanted in keyed.items():
        keys = list(wanted)
        found: set[str] = set()
        for start in range(0, len(keys), chunk_size):
            chunk = keys[start : start + chunk_size]
            for pk, key in Client.objects.filter(**{f"{kind}__in": chunk}).values_list("pk", kind):
                ids.add(pk)
                found.add(str(getattr(key, "as_e164", key)))
        result.not_found.extend(raw for key, raw in wanted.items() if key not in found)
    result.matched = len(ids)
    result.added = segment_add_clients(segment=segment, clients=sorted(ids)) if ids else 0
    return result
