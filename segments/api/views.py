"""Segment REST API: thin views over ``segments.selectors`` and ``segments.services``."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from crm.models import Client
from segments import selectors, services
from segments.api import serializers as s
from segments.catalog import catalog_as_json
from segments.models import Segment
from segments.rules import RulesError

VIEW, ADD, CHANGE = "segments.view_segment", "segments.add_segment", "segments.change_segment"


class SegmentPermission(BasePermission):
    """Reading needs ``view_segment``; creating ``add_segment``; editing ``change_segment``.
    A view may override per method with ``perms_by_method``."""

    default = {"POST": (ADD,), "PUT": (CHANGE,), "PATCH": (CHANGE,)}

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        perms = {**self.default, **getattr(view, "perms_by_method", {})}
        return user.has_perms(perms.get(request.method or "GET", (VIEW,)))


class FieldsView(APIView):
    permission_classes = [SegmentPermission]

    @extend_schema(
        summary="The field catalog: what rules may test",
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request: Request) -> Response:
        return Response(catalog_as_json())


class SegmentListView(generics.ListAPIView):
    permission_classes = [SegmentPermission]
    serializer_class = s.SegmentOutSerializer
    queryset = Segment.objects.all()

    @extend_schema(
        summary="Create a segment",
        request=s.SegmentInSerializer,
        responses={201: s.SegmentDetailSerializer},
    )
    def post(self, request: Request) -> Response:
        given = s.SegmentInSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        data = given.validated_data
        segment = Segment(
            name=data["name"],
            description=data["description"],
            kind=data["kind"],
            auto_refresh=data["auto_refresh"],
        )
        try:
            services.segment_save(segment=segment, rules=data["rules"], actor=request.user)
        except RulesError as exc:
            raise ValidationError(s.rules_errors(exc)) from exc
        return Response(s.SegmentDetailSerializer(segment).data, status=status.HTTP_201_CREATED)


class SegmentDetailView(generics.RetrieveAPIView):
    permission_classes = [SegmentPermission]
    serializer_class = s.SegmentDetailSerializer
    queryset = Segment.objects.all()

    @extend_schema(
        summary="Change a segment (fields not given are kept)",
        request=s.SegmentInSerializer,
        responses={200: s.SegmentDetailSerializer},
    )
    def patch(self, request: Request, pk: int) -> Response:
        segment = self.get_object()
        given = s.SegmentInSerializer(segment, data=request.data, partial=True)
        given.is_valid(raise_exception=True)
        data = given.validated_data
        for name in ("name", "description", "kind", "auto_refresh"):
            if name in data:
                setattr(segment, name, data[name])
        try:
            services.segment_save(segment=segment, rules=data.get("rules"), actor=request.user)
        except RulesError as exc:
            raise ValidationError(s.rules_errors(exc)) from exc
        return Response(s.SegmentDetailSerializer(segment).data)


class SegmentCountView(APIView):
    permission_classes = [SegmentPermission]

    @extend_schema(
        summary="How many clients are in the segment now", responses=s.CountOutSerializer
    )
    def get(self, request: Request, pk: int) -> Response:
        segment = get_object_or_404(Segment, pk=pk)
        return Response(
            {
                "id": segment.pk,
                "count": selectors.segment_count(segment=segment),
                "snapshot_count": segment.member_count,
                "snapshot_taken_at": segment.refreshed_at,
            }
        )


class SegmentMembersView(generics.ListAPIView):
    """Members, newest client first, a cursor page at a time."""

    permission_classes = [SegmentPermission]
    serializer_class = s.MemberSerializer

    @extend_schema(
        summary="The segment's clients: ids and external ids",
        parameters=[
            OpenApiParameter(
                "snapshot",
                OpenApiTypes.BOOL,
                description="true: the last membership snapshot; false (default): live.",
            )
        ],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[Client]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Client.objects.none()
        segment = get_object_or_404(Segment, pk=self.kwargs["pk"])
        if self.request.query_params.get("snapshot", "").lower() in ("1", "true", "yes"):
            queryset = Client.objects.filter(segment_memberships__segment=segment)
        else:
            queryset = selectors.segment_clients(segment=segment)
        return queryset.only("id", "external_id")


class PreviewView(APIView):
    permission_classes = [SegmentPermission]
    perms_by_method = {"POST": (VIEW,)}

    @extend_schema(
        summary="Count and sample the clients matching rules; nothing is stored",
        request=s.PreviewInSerializer,
        responses=s.PreviewOutSerializer,
    )
    def post(self, request: Request) -> Response:
        given = s.PreviewInSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        data = given.validated_data
        try:
            preview = selectors.rules_preview(
                rules=data["rules"],
                segment_id=data["segment_id"],
                sample_size=data["sample_size"],
            )
        except RulesError as exc:
            raise ValidationError(s.rules_errors(exc)) from exc
        return Response(
            {
                "rules": preview.rules,
                "count": preview.count,
                "sample": preview.sample,
                "explanation": preview.explanation,
            }
        )
