"""Offers API serializers: output shapes for offers and next best offers, input for redeem."""

from __future__ import annotations

from rest_framework import serializers

from offers.models import Offer, PromoCode
from segments.models import Segment


class OfferSerializer(serializers.ModelSerializer):
    segments: serializers.PrimaryKeyRelatedField[Segment] = serializers.PrimaryKeyRelatedField(
        many=True, read_only=True
    )
    exclude_segments: serializers.PrimaryKeyRelatedField[Segment] = (
        serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    )
    channels = serializers.ListField(child=serializers.CharField())
    variants = serializers.SerializerMethodField()

    class Meta:
        model = Offer
        fields = (
            "id",
            "name",
            "description",
            "goal",
            "status",
            "priority",
            "segments",
            "exclude_segments",
            "channels",
            "starts_at",
            "ends_at",
            "quantity_limit",
            "benefit_kind",
            "benefit_value",
            "benefit_text",
            "strategy",
            "promo_pool",
            "holdout_percent",
            "variants",
        )

    def get_variants(self, obj: Offer) -> list[dict[str, object]]:
        return [{"id": v.pk, "name": v.name, "weight": v.weight} for v in obj.variants.all()]


class ProductOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    sku = serializers.CharField()
    name = serializers.CharField()
    brand = serializers.CharField()
    category = serializers.CharField()
    price = serializers.DecimalField(max_digits=12, decimal_places=2)
    price_with_benefit = serializers.DecimalField(max_digits=12, decimal_places=2)


class TextOutSerializer(serializers.Serializer):
    text = serializers.CharField()
    subject = serializers.CharField(allow_blank=True)
    encoding = serializers.CharField(allow_null=True)
    parts = serializers.IntegerField(allow_null=True)
    characters = serializers.IntegerField(allow_null=True)
    transliterated = serializers.BooleanField()


class NextBestOfferSerializer(serializers.Serializer):
    offer_id = serializers.IntegerField()
    offer = serializers.CharField()
    priority = serializers.IntegerField()
    strategy = serializers.CharField()
    variant = serializers.CharField()
    channels = serializers.ListField(child=serializers.CharField())
    valid_from = serializers.DateTimeField()
    valid_until = serializers.DateTimeField()
    products = ProductOutSerializer(many=True)
    reason = serializers.CharField()
    facts = serializers.DictField()
    score = serializers.FloatField()
    expected_value = serializers.DecimalField(max_digits=14, decimal_places=2)
    promo_pool_id = serializers.IntegerField(allow_null=True)
    texts = serializers.DictField(child=TextOutSerializer())


class RedeemInSerializer(serializers.Serializer):
    code = serializers.CharField(max_length=64)
    client_id = serializers.IntegerField(required=False, min_value=1)
    purchase_id = serializers.IntegerField(required=False, min_value=1)


class PromoCodeOutSerializer(serializers.ModelSerializer):
    class Meta:
        model = PromoCode
        fields = (
            "code",
            "pool",
            "client",
            "offer",
            "assigned_at",
            "redeemed_at",
            "redeemed_purchase",
        )
