"""Offers REST API: thin views over ``offers.selectors`` and ``offers.services``."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from crm.api.permissions import HasViewPerms
from crm.api.serializers import ErrorSerializer
from crm.models import AuditAction, Client, Purchase
from crm.services import audit_write
from offers import selectors, services
from offers.api import serializers as s
from offers.models import Offer, OfferStatus

_ERRORS = {
    401: OpenApiResponse(ErrorSerializer, description="Not authenticated."),
    403: OpenApiResponse(ErrorSerializer, description="No permission."),
}


@extend_schema(
    summary="List offers",
    parameters=[
        OpenApiParameter(
            "status",
            OpenApiTypes.STR,
            enum=OfferStatus.values,
            description="Only offers in this status; `live` for active offers within their window.",
        )
    ],
    responses={200: s.OfferSerializer, **_ERRORS},
)
class OfferListView(generics.ListAPIView):
    permission_classes = [HasViewPerms]
    required_perms = ("offers.view_offer",)
    serializer_class = s.OfferSerializer

    def get_queryset(self) -> QuerySet[Offer]:
        status = self.request.query_params.get("status", "").strip()
        if status == "live":
            queryset = selectors.live_offer_list()
        else:
            queryset = Offer.objects.prefetch_related("segments", "exclude_segments", "variants")
            if status:
                if status not in OfferStatus.values:
                    raise ValidationError({"status": [f"Unknown status {status!r}."]})
                queryset = queryset.filter(status=status)
        return queryset.prefetch_related("exclude_segments")


class ClientOffersView(APIView):
    """The client's next best offers: every live offer the client is eligible for, ranked by
    priority and expected value, each with its reason, products and rendered texts."""

    permission_classes = [HasViewPerms]
    required_perms = ("offers.view_offer", "crm.view_client")

    @extend_schema(
        summary="Next best offers for a client",
        parameters=[OpenApiParameter("limit", OpenApiTypes.INT, description="At most this many.")],
        responses={200: s.NextBestOfferSerializer(many=True), 404: ErrorSerializer, **_ERRORS},
    )
    def get(self, request: Request, pk: int) -> Response:
        if pk > 2**63 - 1 or not Client.objects.filter(pk=pk).exists():
            raise NotFound()
        raw = request.query_params.get("limit", "")
        if raw and not raw.isdigit():
            raise ValidationError({"limit": ["A positive whole number."]})
        limit = int(raw) if raw else None
        offers = selectors.next_best_offers(client=pk, limit=limit)
        # Texts with the client's name, reasons from their purchases: logged like the card.
        audit_write(
            action=AuditAction.CARD_VIEWED,
            client_id=pk,
            actor=request.user,
            changes={"via": "api-offers"},
        )
        data = [selectors.proposal_as_dict(p) for p in offers]
        return Response(s.NextBestOfferSerializer(data, many=True).data)


class PromoRedeemView(APIView):
    """Record the single use of a promo code (a till, the web shop)."""

    permission_classes = [HasViewPerms]
    required_perms = ("offers.redeem_promocode",)

    @extend_schema(
        summary="Redeem a promo code",
        request=s.RedeemInSerializer,
        responses={
            200: s.PromoCodeOutSerializer,
            400: OpenApiResponse(ErrorSerializer, description="Unknown, used or foreign code."),
            **_ERRORS,
        },
    )
    def post(self, request: Request) -> Response:
        form = s.RedeemInSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        purchase = None
        if "purchase_id" in data:
            purchase = Purchase.objects.filter(pk=data["purchase_id"]).first()
            if purchase is None:
                raise ValidationError({"purchase_id": ["No such purchase."]})
        try:
            promo = services.promo_code_redeem(
                code=data["code"], client_id=data.get("client_id"), purchase=purchase
            )
        except services.PromoCodeError as exc:
            raise ValidationError(exc.message_dict) from exc
        return Response(s.PromoCodeOutSerializer(promo).data)
