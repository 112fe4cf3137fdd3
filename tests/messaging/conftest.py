"""A small messaging world: consented clients in a static segment, an offer, a campaign.

NOW is Wednesday 4 March 2026, 12:00 Moscow — inside every default window.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from crm.models import Channel, Client, ConsentAction, ConsentPurpose, ConsentSource
from crm.services import ConsentChange, consent_record_many
from messaging.backends import locmem
from messaging.models import Campaign, ChannelRule, ContactPolicy
from segments.models import SegmentKind
from segments.services import segment_add_clients
from tests.factories import (
    ClientFactory,
    OfferFactory,
    OfferVariantFactory,
    ProductFactory,
    SegmentFactory,
)

MSK = ZoneInfo("Europe/Moscow")
NOW = dt.datetime(2026, 3, 4, 12, 0, tzinfo=MSK)


@pytest.fixture(autouse=True)
def locmem_backends(settings: Any) -> Iterator[None]:
    settings.SMS_BACKEND = "messaging.backends.locmem.LocmemBackend"
    settings.VOICE_BACKEND = "messaging.backends.locmem.LocmemBackend"
    settings.SMS_BACKEND_OPTIONS = {}
    settings.VOICE_BACKEND_OPTIONS = {}
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.PUBLIC_BASE_URL = "https://lichno.example"
    settings.LANGUAGE_CODE = "en"
    locmem.reset()
    yield
    locmem.reset()


def grant(clients: list[Client], *channels: str, at: dt.datetime = NOW) -> None:
    consent_record_many(
        changes=[
            ConsentChange(
                client_id=c.pk,
                channel=ch,
                purpose=ConsentPurpose.MARKETING,
                action=ConsentAction.GRANTED,
                source=ConsentSource.WEB_FORM,
                wording_version="v1",
                occurred_at=at - dt.timedelta(days=30),
            )
            for c in clients
            for ch in channels
        ]
    )


def withdraw(client: Client, channel: str, at: dt.datetime | None = None) -> None:
    consent_record_many(
        changes=[
            ConsentChange(
                client_id=client.pk,
                channel=channel,
                purpose=ConsentPurpose.MARKETING,
                action=ConsentAction.WITHDRAWN,
                source=ConsentSource.API,
                wording_version="v1",
                occurred_at=at or timezone.now(),
            )
        ]
    )


def calls_all_day_policy() -> ContactPolicy:
    """An active policy allowing calls around the clock, so call tests pass whatever the hour."""
    policy = ContactPolicy.objects.create(name="calls all day", is_active=True)
    ChannelRule.objects.create(
        policy=policy,
        channel=Channel.CALL,
        weekday_start=dt.time(0, 0),
        weekday_end=dt.time.max,
        weekend_start=dt.time(0, 0),
        weekend_end=dt.time.max,
    )
    return policy


class World(dict):
    def __getattr__(self, name: str) -> Any:
        return self[name]


def make_world(n: int = 5, *, channels: tuple[str, ...] = (Channel.SMS, Channel.EMAIL)) -> World:
    w = World()
    w["clients"] = [ClientFactory(time_zone="Europe/Moscow") for _ in range(n)]
    grant(w["clients"], *channels)
    w["segment"] = SegmentFactory(kind=SegmentKind.STATIC)
    segment_add_clients(segment=w["segment"], clients=[c.pk for c in w["clients"]])
    w["product"] = ProductFactory(name="Корм Purina One, 1,5 кг", price=Decimal("900"))
    offer = OfferFactory(
        strategy="fixed",
        channels=["sms", "email", "call"],
        starts_at=NOW - dt.timedelta(days=1),
        ends_at=NOW + dt.timedelta(days=14),
        holdout_percent=Decimal("0"),
    )
    offer.segments.set([w["segment"]])
    offer.fixed_products.set([w["product"]])
    OfferVariantFactory(offer=offer)
    w["offer"] = offer
    w["campaign"] = Campaign.objects.create(
        name=f"Весенний корм {offer.pk}", offer=offer, channels=["sms", "email"], landing_url=""
    )
    return w


@pytest.fixture
def world(db: None) -> World:
    return make_world()
