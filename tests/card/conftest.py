"""A rich client for the operator's card: profile, family, loyalty, consents, purchases with
items, events, messages and a live offer with its reason; operator and outsider logins."""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client as HttpClient
from django.utils import timezone

from crm.card.selectors import catalog_cache_clear
from crm.models import (
    Channel,
    Child,
    Client,
    Event,
    EventType,
    Interest,
    Pet,
    Purchase,
    PurchaseItem,
)
from messaging.models import Message, MessageStatus
from segments.models import SegmentKind
from segments.services import segment_add_clients
from tests.factories import (
    ClientFactory,
    LoyaltyAccountFactory,
    OfferFactory,
    OfferVariantFactory,
    ProductFactory,
    SegmentFactory,
    TierFactory,
)
from tests.messaging.conftest import grant, locmem_backends  # noqa: F401 - autouse fixture

PHONE = "+79123456789"


@pytest.fixture(autouse=True)
def fresh_catalog() -> Iterator[None]:
    """The card caches the offer engine's catalog per process; each test has its own data."""
    catalog_cache_clear()
    yield
    catalog_cache_clear()


class Rich(dict):
    def __getattr__(self, name: str) -> Any:
        return self[name]


def make_rich_client(*, purchases: int = 5, messages: int = 5, phone: str = PHONE) -> Rich:
    now = timezone.now()
    client = ClientFactory(
        last_name="Смирнова",
        first_name="Анна",
        middle_name="Петровна",
        gender="f",
        birth_date=dt.date(1990, 5, 17),
        phone=phone,
        email=f"anna{phone[-4:]}@example.ru",
        external_id=f"POS-{phone[-4:]}",
        city="Екатеринбург",
        time_zone="Asia/Yekaterinburg",
        preferred_channel=Channel.SMS,
        preferred_contact_time="evening",
        family_status="married",
    )
    Child.objects.create(client=client, birth_year=2018, gender="m")
    Pet.objects.create(client=client, kind="cat", name="Мурка")
    client.interests.add(Interest.objects.create(name="садоводство"))
    LoyaltyAccountFactory(client=client, tier=TierFactory(name="Золото", rank=2), balance=1250)
    grant([client], Channel.SMS, Channel.CALL, at=now)
    product = ProductFactory(name="Корм Purina One, 1,5 кг", price=Decimal("900"))
    rows = Purchase.objects.bulk_create(
        Purchase(
            client=client,
            purchased_at=now - dt.timedelta(days=3 + 7 * i),
            total=Decimal("900.00"),
            external_id=f"R-{client.pk}-{i}",
        )
        for i in range(purchases)
    )
    PurchaseItem.objects.bulk_create(
        PurchaseItem(
            purchase=p,
            product=product,
            unit_price=Decimal("900.00"),
            client=client,
            purchased_at=p.purchased_at,
        )
        for p in rows
    )
    Event.objects.bulk_create(
        Event(
            client=client,
            type=EventType.CART_ADD,
            occurred_at=now - dt.timedelta(hours=i + 1),
            product=product,
        )
        for i in range(3)
    )
    segment = SegmentFactory(kind=SegmentKind.STATIC)
    segment_add_clients(segment=segment, clients=[client.pk])
    offer = OfferFactory(
        name="Корм со скидкой",
        channels=["sms", "call"],
        holdout_percent=Decimal("0"),
        starts_at=now - dt.timedelta(days=1),
        ends_at=now + dt.timedelta(days=14),
    )
    offer.segments.set([segment])
    offer.fixed_products.set([product])
    OfferVariantFactory(offer=offer)
    Message.objects.bulk_create(
        Message(
            client=client,
            channel=Channel.SMS,
            offer=offer,
            recipient=phone,
            text=f"Сообщение {i}",
            reason="Вы покупали корм",
            scheduled_for=now - dt.timedelta(days=30 + i),
            sent_at=now - dt.timedelta(days=30 + i),
            status=MessageStatus.DELIVERED,
            idempotency_key=f"test:{client.pk}:{i}",
        )
        for i in range(messages)
    )
    return Rich(client=client, offer=offer, product=product, segment=segment)


def ensure_card_roles() -> None:
    """Recreate the groups and their permissions as migrations do: a transactional test
    elsewhere may have flushed them. The card's permissions are created by its migration (not
    by a model's Meta), then crm.roles gives every role what it declares."""
    from crm.roles import sync_roles

    importlib.import_module("crm.migrations.0009_card_permissions").grant(django_apps, None)
    sync_roles(django_apps)


def user_in(group: str | None, username: str, password: str = "x") -> Any:
    user = get_user_model().objects.create_user(username=username, password=password, is_staff=True)
    if group:
        if not Group.objects.filter(name=group, permissions__codename="view_client_card").exists():
            ensure_card_roles()
        user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def operator(db: None) -> Any:
    return user_in("Operator", "operator1")


@pytest.fixture
def operator_http(operator: Any) -> HttpClient:
    http = HttpClient()
    http.force_login(operator)
    return http


@pytest.fixture
def rich(db: None) -> Rich:
    return make_rich_client()


def reload(client: Client) -> Client:
    return Client.objects.get(pk=client.pk)
