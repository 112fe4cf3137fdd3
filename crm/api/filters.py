"""Filters of the read endpoints (django-filter); every one is served by an index."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _
from rest_framework.exceptions import ValidationError

from crm.models import Client, Product, Purchase
from crm.phones import normalize_phone

_MAX_ID = 2**63 - 1


class ClientFilter(django_filters.FilterSet):
    phone = django_filters.CharFilter(
        method="filter_phone", help_text=_("Phone in any format, matched in E.164.")
    )
    external_id = django_filters.CharFilter(field_name="external_id")
    email = django_filters.CharFilter(method="filter_email", help_text=_("Case-insensitive."))
    segment = django_filters.NumberFilter(
        method="filter_segment", help_text=_("Segment id: its current members.")
    )

    class Meta:
        model = Client
        fields = ["phone", "external_id", "email", "segment"]

    def filter_phone(self, queryset: QuerySet[Client], name: str, value: str) -> QuerySet[Client]:
        phone = normalize_phone(value)
        if phone is None:
            raise ValidationError({"phone": [_("Not a valid phone number.")]})
        return queryset.filter(phone=phone)

    def filter_email(self, queryset: QuerySet[Client], name: str, value: str) -> QuerySet[Client]:
        return queryset.filter(email=value.strip().lower())

    def filter_segment(self, queryset: QuerySet[Client], name: str, value: Any) -> QuerySet[Client]:
        # Presentation composes across apps: the segment's members come from segments' selector.
        from segments.models import Segment
        from segments.selectors import segment_clients

        if value != int(value) or not 0 < value <= _MAX_ID:
            raise ValidationError({"segment": [_("No such segment.")]})
        segment = Segment.objects.filter(pk=int(value)).first()
        if segment is None:
            raise ValidationError({"segment": [_("No such segment.")]})
        return queryset.filter(pk__in=segment_clients(segment=segment).values("pk"))


class ProductFilter(django_filters.FilterSet):
    sku = django_filters.CharFilter(field_name="sku")
    category = django_filters.CharFilter(field_name="category__slug", help_text=_("Slug."))
    active = django_filters.BooleanFilter(field_name="active")

    class Meta:
        model = Product
        fields = ["sku", "category", "active"]


class PurchaseFilter(django_filters.FilterSet):
    client = django_filters.NumberFilter(field_name="client_id", help_text=_("Client id."))
    client_external_id = django_filters.CharFilter(field_name="client__external_id")
    external_id = django_filters.CharFilter(field_name="external_id")
    purchased_after = django_filters.IsoDateTimeFilter(field_name="purchased_at", lookup_expr="gte")
    purchased_before = django_filters.IsoDateTimeFilter(field_name="purchased_at", lookup_expr="lt")

    class Meta:
        model = Purchase
        fields = ["client", "client_external_id", "external_id"]
