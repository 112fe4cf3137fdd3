"""REST API views: thin; validation and writes are ``crm.bulk``, reads are selectors/querysets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db.models import Prefetch, QuerySet
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.views import APIView

from crm import bulk, selectors, services
from crm.api import serializers as s
from crm.api.exceptions import PayloadTooLarge
from crm.api.filters import ClientFilter, ProductFilter, PurchaseFilter
from crm.api.parsers import BulkJSONParser
from crm.api.permissions import HasViewPerms
from crm.models import AuditAction, Client, Product, Purchase, PurchaseItem

_ERRORS = {
    400: OpenApiResponse(s.ErrorSerializer, description="Invalid input."),
    401: OpenApiResponse(s.ErrorSerializer, description="Not authenticated."),
    403: OpenApiResponse(s.ErrorSerializer, description="No permission."),
    429: OpenApiResponse(s.ErrorSerializer, description="Too many requests."),
}

ATOMIC_PARAM = OpenApiParameter(
    "atomic",
    OpenApiTypes.BOOL,
    description=(
        "false (default): valid objects are stored, invalid ones reported in `errors`. "
        "true: if any object has an error nothing is stored and the answer is 400."
    ),
)


def _flag(request: Request, name: str) -> bool:
    raw = request.query_params.get(name, "false").strip().lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("", "0", "false", "no", "off"):
        return False
    raise ValidationError({name: [_("Must be true or false.")]})


class BulkView(APIView):
    """POST a JSON array of up to 10,000 objects; see ``crm.bulk`` for matching rules."""

    permission_classes = [HasViewPerms]
    parser_classes = [BulkJSONParser]
    required_perms: tuple[str, ...] = ()
    upsert: Callable[..., bulk.BulkResult]

    def post(self, request: Request) -> Response:
        length = request.META.get("CONTENT_LENGTH") or "0"
        if length.isdigit() and int(length) > settings.API_MAX_BODY_BYTES:
            raise PayloadTooLarge(
                _("The body is larger than %(n)d bytes.") % {"n": settings.API_MAX_BODY_BYTES}
            )
        atomic = _flag(request, "atomic")
        rows = request.data
        if not isinstance(rows, list):
            raise ValidationError({"non_field_errors": [_("Expected a JSON array of objects.")]})
        if len(rows) > bulk.MAX_BATCH_SIZE:
            raise PayloadTooLarge(
                _("A batch holds at most %(n)d objects; this one has %(m)d.")
                % {"n": bulk.MAX_BATCH_SIZE, "m": len(rows)}
            )
        result = type(self).upsert(rows=rows, atomic=atomic, actor=request.user)
        body = result.as_dict()
        if result.rejected:
            body = {"detail": _("The batch has errors; nothing was stored."), **body}
            return Response(body, status=status.HTTP_400_BAD_REQUEST)
        return Response(body)


def _bulk_schema(item: type[Serializer], what: str) -> Callable[[Any], Any]:
    return extend_schema(
        summary=f"Create or update {what} in bulk",
        request=item(many=True),
        parameters=[ATOMIC_PARAM],
        responses={
            200: s.BulkResultSerializer,
            **_ERRORS,
            413: OpenApiResponse(s.ErrorSerializer, description="More than 10,000 objects."),
        },
    )


class ClientBulkView(BulkView):
    """Clients matched by `external_id`. Fields absent from an object keep their stored value;
    the time zone follows the city unless given."""

    required_perms = ("crm.api_write", "crm.add_client", "crm.change_client")
    upsert = staticmethod(bulk.client_upsert_many)

    @_bulk_schema(s.ClientInSerializer, "clients")
    def post(self, request: Request) -> Response:
        return super().post(request)


class ProductBulkView(BulkView):
    """Products matched by `sku`; unknown category slugs and brand names are created."""

    required_perms = ("crm.api_write", "crm.add_product", "crm.change_product")
    upsert = staticmethod(bulk.product_upsert_many)

    @_bulk_schema(s.ProductInSerializer, "products")
    def post(self, request: Request) -> Response:
        return super().post(request)


class PurchaseBulkView(BulkView):
    """Purchases matched by `external_id`, with their items (products by `sku`). A purchase
    that differs from the stored one is updated and its items replaced. New purchases accrue
    loyalty points (a background task started when the batch is stored)."""

    required_perms = ("crm.api_write", "crm.add_purchase", "crm.change_purchase")
    upsert = staticmethod(bulk.purchase_upsert_many)

    @_bulk_schema(s.PurchaseInSerializer, "purchases")
    def post(self, request: Request) -> Response:
        return super().post(request)


class EventBulkView(BulkView):
    """Behavioural events; one already stored (same client, type, time, product) is unchanged."""

    required_perms = ("crm.api_write", "crm.add_event")
    upsert = staticmethod(bulk.event_record_many)

    @_bulk_schema(s.EventInSerializer, "events")
    def post(self, request: Request) -> Response:
        return super().post(request)


class ConsentBulkView(BulkView):
    """Consent grants and withdrawals, appended to the client's consent history; the current
    consent follows the latest event. An event already in the history is unchanged."""

    required_perms = ("crm.api_write", "crm.add_consentevent")
    upsert = staticmethod(bulk.consent_import_many)

    @_bulk_schema(s.ConsentInSerializer, "consent events")
    def post(self, request: Request) -> Response:
        return super().post(request)


# Reads -----------------------------------------------------------------------------------------


@extend_schema(summary="Find clients", responses={200: s.ClientListSerializer, **_ERRORS})
class ClientListView(generics.ListAPIView):
    permission_classes = [HasViewPerms]
    required_perms = ("crm.view_client",)
    serializer_class = s.ClientListSerializer
    filterset_class = ClientFilter

    def get_queryset(self) -> QuerySet[Client]:
        return Client.objects.all()


class ClientCardView(APIView):
    permission_classes = [HasViewPerms]
    required_perms = ("crm.view_client", "crm.view_purchase", "crm.view_consent")

    @extend_schema(
        summary="A client's card",
        description="Profile, consents, loyalty, recent purchases and messages. Reads are "
        "recorded in the audit log.",
        responses={200: s.ClientCardSerializer, 404: s.ErrorSerializer, **_ERRORS},
    )
    def get(self, request: Request, pk: int) -> Response:
        if pk > 2**63 - 1:
            raise NotFound()
        card = selectors.client_card(client_id=pk)
        if card is None:
            raise NotFound()
        services.audit_write(
            action=AuditAction.CARD_VIEWED, client_id=pk, actor=request.user, changes={"via": "api"}
        )
        return Response(s.ClientCardSerializer(card).data)


@extend_schema(summary="List products", responses={200: s.ProductSerializer, **_ERRORS})
class ProductListView(generics.ListAPIView):
    permission_classes = [HasViewPerms]
    required_perms = ("crm.view_product",)
    serializer_class = s.ProductSerializer
    filterset_class = ProductFilter

    def get_queryset(self) -> QuerySet[Product]:
        return Product.objects.select_related("category", "brand")


@extend_schema(summary="List purchases", responses={200: s.PurchaseSerializer, **_ERRORS})
class PurchaseListView(generics.ListAPIView):
    permission_classes = [HasViewPerms]
    required_perms = ("crm.view_purchase",)
    serializer_class = s.PurchaseSerializer
    filterset_class = PurchaseFilter

    def get_queryset(self) -> QuerySet[Purchase]:
        return Purchase.objects.select_related("client").prefetch_related(
            Prefetch(
                "items", queryset=PurchaseItem.objects.select_related("product").order_by("id")
            )
        )
