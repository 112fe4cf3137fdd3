"""Segments: who a campaign or offer is for.

A rule segment is a tree of rules over the field catalog (``segments/catalog.py``), compiled to
one query over clients (``segments/compiler.py``). A static segment is a list of clients. Both
keep a membership snapshot (``SegmentMember``) and a size history, written by
``segments/services.py`` only.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from crm.models import Client, TimeStamped


def empty_rules() -> dict:
    return {"match": "all", "rules": []}


class SegmentKind(models.TextChoices):
    RULES = "rules", _("rule-based")
    STATIC = "static", _("static list")


class Segment(TimeStamped):
    name = models.CharField(_("name"), max_length=150, unique=True)
    description = models.TextField(_("description"), blank=True)
    kind = models.CharField(
        _("kind"), max_length=10, choices=SegmentKind.choices, default=SegmentKind.RULES
    )
    rules = models.JSONField(
        _("rules"),
        default=empty_rules,
        blank=True,
        help_text=_("A tree of rule groups; see segments/README.md."),
    )
    auto_refresh = models.BooleanField(
        _("refresh periodically"),
        default=False,
        help_text=_("The membership snapshot is recomputed by the periodic task."),
    )
    member_count = models.PositiveIntegerField(_("members (snapshot)"), null=True, blank=True)
    refreshed_at = models.DateTimeField(_("snapshot taken at"), null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("created by"),
    )

    class Meta:
        verbose_name = _("segment")
        verbose_name_plural = _("segments")
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=["rules", "static"]), name="segment_kind_known"
            )
        ]

    def __str__(self) -> str:
        return self.name


class SegmentMember(models.Model):
    """A client in a segment: the list itself for a static segment, the last snapshot for a
    rule segment.

    Snapshots are rewritten set-based, hundreds of thousands of rows at a time, so the row is
    lean: the primary key is (segment, client), and the foreign keys are not checked by the
    database row by row (clients are anonymized, never deleted; Django still cascades).
    """

    pk = models.CompositePrimaryKey("segment", "client")
    segment = models.ForeignKey(
        Segment,
        on_delete=models.CASCADE,
        related_name="members",
        verbose_name=_("segment"),
        db_constraint=False,
        db_index=False,
    )
    client = models.ForeignKey(
        Client,
        on_delete=models.CASCADE,
        related_name="segment_memberships",
        verbose_name=_("client"),
        db_constraint=False,
        db_index=False,
    )
    added_at = models.DateTimeField(_("added at"))

    class Meta:
        verbose_name = _("segment member")
        verbose_name_plural = _("segment members")
        indexes = [models.Index(fields=["client", "segment"], name="segment_member_client_idx")]

    def __str__(self) -> str:
        return f"{self.segment_id}:{self.client_id}"


class SegmentSizeHistory(models.Model):
    """The size of a segment each time its membership was refreshed."""

    segment = models.ForeignKey(
        Segment, on_delete=models.CASCADE, related_name="size_history", verbose_name=_("segment")
    )
    measured_at = models.DateTimeField(_("measured at"))
    size = models.PositiveIntegerField(_("size"))
    added = models.PositiveIntegerField(_("added"), default=0)
    removed = models.PositiveIntegerField(_("removed"), default=0)
    duration_ms = models.PositiveIntegerField(_("duration, ms"), default=0)

    class Meta:
        verbose_name = _("segment size")
        verbose_name_plural = _("segment size history")
        ordering = ["-measured_at"]
        indexes = [models.Index(fields=["segment", "-measured_at"], name="segment_size_time_idx")]

    def __str__(self) -> str:
        return f"{self.size} @ {self.measured_at:%Y-%m-%d %H:%M}"
