"""Segment API serializers: input and output kept apart; rules are validated by the catalog."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from segments.models import Segment, SegmentKind
from segments.rules import explain_rules

RULES_HELP = (
    'A rule tree: {"match": "all"|"any", "negate": false, "rules": [...]}, each rule '
    '{"field", "operator", "value", ...params}; fields and operators: GET /api/v1/segments/fields/.'
)


class SegmentOutSerializer(serializers.ModelSerializer):
    class Meta:
        model = Segment
        fields: tuple[str, ...] = (
            "id",
            "name",
            "description",
            "kind",
            "rules",
            "auto_refresh",
            "member_count",
            "refreshed_at",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields


class SegmentDetailSerializer(SegmentOutSerializer):
    explanation = serializers.SerializerMethodField()

    class Meta(SegmentOutSerializer.Meta):
        fields = (*SegmentOutSerializer.Meta.fields, "explanation")
        read_only_fields: tuple[str, ...] = fields

    def get_explanation(self, obj: Segment) -> str:
        return explain_rules(obj.rules) if obj.kind == SegmentKind.RULES else ""


class SegmentInSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=150)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    kind = serializers.ChoiceField(choices=SegmentKind.choices, default=SegmentKind.RULES)
    rules = serializers.JSONField(required=False, default=dict, help_text=RULES_HELP)
    auto_refresh = serializers.BooleanField(required=False, default=False)

    def validate_name(self, value: str) -> str:
        existing = Segment.objects.filter(name=value)
        instance = self.instance
        if instance is not None:
            existing = existing.exclude(pk=instance.pk)
        if existing.exists():
            raise serializers.ValidationError("A segment with this name already exists.")
        return value


class PreviewInSerializer(serializers.Serializer):
    rules = serializers.JSONField(help_text=RULES_HELP)
    sample_size = serializers.IntegerField(required=False, default=10, min_value=0, max_value=100)
    segment_id = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        help_text="When editing a segment: checks that the rules do not refer back to it.",
    )


class SampleClientSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField(allow_null=True)
    last_name = serializers.CharField()
    first_name = serializers.CharField()
    city = serializers.CharField()


class PreviewOutSerializer(serializers.Serializer):
    rules = serializers.JSONField()
    count = serializers.IntegerField()
    sample = SampleClientSerializer(many=True)
    explanation = serializers.CharField()


class CountOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    count = serializers.IntegerField(help_text="Members now (rules evaluated live).")
    snapshot_count = serializers.IntegerField(allow_null=True)
    snapshot_taken_at = serializers.DateTimeField(allow_null=True)


class MemberSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField(allow_null=True)


def rules_errors(exc: Any) -> dict[str, list[str]]:
    return {"rules": list(exc.messages)}
