"""Serializers of the REST API: bulk inputs (documentation of what ``crm.bulk`` accepts) and
read outputs. Bulk rows are validated by ``crm.bulk`` itself, set-based and fast, so that the API
and file import apply exactly the same rules; these input serializers only describe them."""

from __future__ import annotations

from rest_framework import serializers

from crm.bulk import MAX_ITEMS_PER_PURCHASE
from crm.models import (
    Brand,
    Category,
    Channel,
    Client,
    ClientSource,
    Consent,
    ConsentAction,
    ConsentPurpose,
    ConsentSource,
    ContactTime,
    Education,
    EventType,
    FamilyStatus,
    Gender,
    Product,
    Purchase,
    PurchaseItem,
    SalesChannel,
)

# Inputs (bulk) ---------------------------------------------------------------------------------

_CLIENT_REF_HELP = "Give client_external_id or client_phone (any format, normalized to E.164)."


class ClientInSerializer(serializers.Serializer):
    external_id = serializers.CharField(max_length=64, help_text="Your id of the client: the key.")
    last_name = serializers.CharField(max_length=100, required=False, allow_blank=True)
    first_name = serializers.CharField(max_length=100, required=False, allow_blank=True)
    middle_name = serializers.CharField(max_length=100, required=False, allow_blank=True)
    gender = serializers.ChoiceField(Gender.choices, required=False, allow_blank=True)
    birth_date = serializers.DateField(required=False, allow_null=True)
    phone = serializers.CharField(
        max_length=40,
        required=False,
        allow_blank=True,
        help_text="Any common format; stored in E.164. An unparsable phone is an error.",
    )
    email = serializers.EmailField(required=False, allow_blank=True)
    city = serializers.CharField(max_length=100, required=False, allow_blank=True)
    region = serializers.CharField(max_length=150, required=False, allow_blank=True)
    time_zone = serializers.CharField(
        required=False, help_text="IANA name; derived from the city when not given."
    )
    preferred_channel = serializers.ChoiceField(Channel.choices, required=False, allow_blank=True)
    preferred_contact_time = serializers.ChoiceField(
        ContactTime.choices, required=False, allow_blank=True
    )
    family_status = serializers.ChoiceField(FamilyStatus.choices, required=False, allow_blank=True)
    occupation = serializers.CharField(max_length=150, required=False, allow_blank=True)
    education = serializers.ChoiceField(Education.choices, required=False, allow_blank=True)
    attributes = serializers.DictField(required=False, help_text="Integration-specific data.")
    # An API field named like the attribute Field declares (the stubs see a clash; DRF does not).
    source = serializers.ChoiceField(ClientSource.choices, required=False)  # type: ignore[assignment]


class ProductInSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=64, help_text="The key.")
    name = serializers.CharField(max_length=255, required=False, help_text="Required when new.")
    category = serializers.SlugField(
        max_length=150,
        required=False,
        help_text="Category slug; an unknown one is created. Required when new.",
    )
    category_name = serializers.CharField(
        max_length=150, required=False, help_text="Name of a category created here."
    )
    brand = serializers.CharField(
        max_length=150, required=False, allow_blank=True, help_text="Brand name; created if new."
    )
    price = serializers.DecimalField(
        max_digits=12, decimal_places=2, min_value=0, required=False, help_text="Required when new."
    )
    cost = serializers.DecimalField(
        max_digits=12, decimal_places=2, min_value=0, required=False, allow_null=True
    )
    in_stock = serializers.BooleanField(required=False)
    active = serializers.BooleanField(required=False)


class PurchaseItemInSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    quantity = serializers.DecimalField(max_digits=10, decimal_places=3, required=False)
    unit_price = serializers.DecimalField(
        max_digits=12,
        decimal_places=2,
        min_value=0,
        required=False,
        help_text="Defaults to the product's price.",
    )
    discount = serializers.DecimalField(
        max_digits=12, decimal_places=2, min_value=0, required=False
    )


class PurchaseInSerializer(serializers.Serializer):
    external_id = serializers.CharField(max_length=64, help_text="Your receipt id: the key.")
    client_external_id = serializers.CharField(
        max_length=64, required=False, help_text=_CLIENT_REF_HELP
    )
    client_phone = serializers.CharField(max_length=40, required=False, help_text=_CLIENT_REF_HELP)
    purchased_at = serializers.DateTimeField(
        help_text="ISO 8601; without an offset read in the company time zone."
    )
    channel = serializers.ChoiceField(SalesChannel.choices, required=False)
    store = serializers.CharField(max_length=100, required=False, allow_blank=True)
    total = serializers.DecimalField(
        max_digits=12,
        decimal_places=2,
        min_value=0,
        required=False,
        help_text="Used only without items; with items the total is their sum.",
    )
    # ListSerializer takes max_length (DRF 3.14); the stubs do not know it.
    items = PurchaseItemInSerializer(  # type: ignore[call-arg]
        many=True, required=False, max_length=MAX_ITEMS_PER_PURCHASE
    )


class EventInSerializer(serializers.Serializer):
    client_external_id = serializers.CharField(
        max_length=64, required=False, help_text=_CLIENT_REF_HELP
    )
    client_phone = serializers.CharField(max_length=40, required=False, help_text=_CLIENT_REF_HELP)
    type = serializers.ChoiceField(EventType.choices)
    occurred_at = serializers.DateTimeField()
    sku = serializers.CharField(max_length=64, required=False, help_text="The product, if any.")
    payload = serializers.DictField(required=False)


class ConsentInSerializer(serializers.Serializer):
    client_external_id = serializers.CharField(
        max_length=64, required=False, help_text=_CLIENT_REF_HELP
    )
    client_phone = serializers.CharField(max_length=40, required=False, help_text=_CLIENT_REF_HELP)
    channel = serializers.ChoiceField(Channel.choices)
    purpose = serializers.ChoiceField(ConsentPurpose.choices, required=False)
    action = serializers.ChoiceField(ConsentAction.choices)
    source = serializers.ChoiceField(ConsentSource.choices, required=False)  # type: ignore[assignment]
    wording_version = serializers.CharField(max_length=50)
    occurred_at = serializers.DateTimeField(help_text="When the client said it; not in the future.")
    evidence = serializers.CharField(required=False, allow_blank=True)


# Outputs ---------------------------------------------------------------------------------------


class ErrorItemSerializer(serializers.Serializer):
    index = serializers.IntegerField(allow_null=True, help_text="Position in the batch.")
    field = serializers.CharField(help_text='Dotted path, e.g. "items[1].sku"; "" for the row.')
    message = serializers.CharField()


class BulkResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    errors = ErrorItemSerializer(many=True)  # type: ignore[assignment]  # the API's field name


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    errors = ErrorItemSerializer(many=True)  # type: ignore[assignment]  # the API's field name


class ClientListSerializer(serializers.ModelSerializer):
    phone = serializers.SerializerMethodField()
    time_zone = serializers.CharField()

    class Meta:
        model = Client
        fields = [
            "id",
            "external_id",
            "last_name",
            "first_name",
            "middle_name",
            "gender",
            "birth_date",
            "phone",
            "email",
            "city",
            "region",
            "time_zone",
            "preferred_channel",
            "source",
            "created_at",
            "updated_at",
        ]

    def get_phone(self, obj: Client) -> str:
        return obj.phone.as_e164 if obj.phone else ""


class ClientProfileSerializer(ClientListSerializer):
    class Meta(ClientListSerializer.Meta):
        fields = [
            *ClientListSerializer.Meta.fields,
            "preferred_contact_time",
            "family_status",
            "occupation",
            "education",
            "attributes",
            "is_anonymized",
        ]


class ConsentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Consent
        fields = ["channel", "purpose", "is_granted", "changed_at", "source", "wording_version"]


class LoyaltySerializer(serializers.Serializer):
    tier = serializers.CharField(allow_null=True)
    balance = serializers.IntegerField()
    rolling_spend = serializers.DecimalField(max_digits=14, decimal_places=2)


class PurchaseItemSerializer(serializers.ModelSerializer):
    sku = serializers.CharField(source="product.sku")
    name = serializers.CharField(source="product.name")

    class Meta:
        model = PurchaseItem
        fields = ["sku", "name", "quantity", "unit_price", "discount"]


class PurchaseSerializer(serializers.ModelSerializer):
    client_external_id = serializers.CharField(source="client.external_id", allow_null=True)
    items = PurchaseItemSerializer(many=True)

    class Meta:
        model = Purchase
        fields = [
            "id",
            "external_id",
            "client",
            "client_external_id",
            "purchased_at",
            "channel",
            "store",
            "total",
            "items",
        ]


class ClientCardSerializer(serializers.Serializer):
    profile = ClientProfileSerializer()
    consents = ConsentSerializer(many=True)
    loyalty = LoyaltySerializer(allow_null=True)
    recent_purchases = PurchaseSerializer(many=True)
    recent_messages = serializers.ListField(
        child=serializers.DictField(), help_text="Messages sent to the client (coming soon)."
    )


class ProductSerializer(serializers.ModelSerializer):
    category: serializers.SlugRelatedField[Category] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    brand: serializers.SlugRelatedField[Brand] = serializers.SlugRelatedField(
        slug_field="name", read_only=True, allow_null=True
    )

    class Meta:
        model = Product
        fields = [
            "id",
            "sku",
            "name",
            "category",
            "brand",
            "price",
            "cost",
            "in_stock",
            "active",
            "updated_at",
        ]
