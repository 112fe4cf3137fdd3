"""Reads of segments: the live members of a rule tree, counts, previews and snapshots."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from crm.models import Client
from segments.compiler import analytic_session, base_queryset, compile_rules
from segments.models import Segment, SegmentKind, SegmentMember
from segments.rules import explain_rules, validate_rules

SAMPLE_FIELDS = ("id", "external_id", "last_name", "first_name", "city")


def segment_clients(*, segment: Segment, now: dt.datetime | None = None) -> QuerySet[Client]:
    """The clients in a segment now: its rules compiled, or its list for a static one."""
    if segment.kind == SegmentKind.STATIC:
        return base_queryset().filter(segment_memberships__segment=segment)
    return compile_rules(segment.rules, now=now, segment_id=segment.pk)


def segment_members(*, segment: Segment) -> QuerySet[SegmentMember]:
    """The last snapshot of a segment's membership (the list itself for a static segment)."""
    return SegmentMember.objects.filter(segment=segment)


def segment_count(*, segment: Segment, now: dt.datetime | None = None) -> int:
    with analytic_session():
        return segment_clients(segment=segment, now=now).count()


@dataclass(frozen=True)
class Preview:
    rules: dict[str, Any]
    count: int
    sample: list[dict[str, Any]]
    explanation: str


def rules_preview(
    *,
    rules: Any,
    segment_id: int | None = None,
    sample_size: int = 10,
    now: dt.datetime | None = None,
) -> Preview:
    """Validate rules (``RulesError`` if wrong), then count and sample the matching clients.

    Three queries besides validation: the count, the sample and the explanation's names.
    """
    tree = validate_rules(rules, segment_id=segment_id)
    queryset = compile_rules(tree, now=now, segment_id=segment_id)
    with analytic_session():
        count = queryset.count()
        sample = (
            list(queryset.order_by("-pk").values(*SAMPLE_FIELDS)[:sample_size]) if count else []
        )
    return Preview(rules=tree, count=count, sample=sample, explanation=explain_rules(tree))


def segments_due_for_refresh() -> QuerySet[Segment]:
    return Segment.objects.filter(auto_refresh=True).order_by("refreshed_at", "pk")
