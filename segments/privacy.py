"""Segments' personal data for ``crm.privacy``: which lists and snapshots a client is in.

An anonymized client leaves every static list and snapshot (rule segments never take anonymized
clients back), and the affected segments' member counts follow in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db.models import Count, IntegerField, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils.translation import gettext_lazy as _

from crm.privacy import Rows, Section, register
from segments.models import Segment, SegmentMember


def export_memberships(client_ids: Sequence[int]) -> Rows:
    return (
        SegmentMember.objects.filter(client_id__in=client_ids)
        .order_by("segment__name")
        .values("client_id", "segment__name", "segment__kind", "added_at")
    )


def anonymize_memberships(client_ids: Sequence[int]) -> None:
    members = SegmentMember.objects.filter(client_id__in=client_ids)
    affected = list(members.values_list("segment_id", flat=True).distinct())
    if not affected:
        return
    members.delete()
    size = (
        SegmentMember.objects.filter(segment_id=OuterRef("pk"))
        .order_by()
        .values("segment_id")
        .annotate(size=Count("*"))
        .values("size")
    )
    Segment.objects.filter(pk__in=affected).update(
        member_count=Coalesce(Subquery(size, output_field=IntegerField()), Value(0))
    )


register(
    Section(
        "segments",
        _("segments"),
        export_memberships,
        anonymize_memberships,
        models=(SegmentMember,),
    )
)
