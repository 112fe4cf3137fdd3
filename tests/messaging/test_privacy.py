"""Messaging's part of the personal-data export and of anonymization."""

from __future__ import annotations

from typing import Any

import pytest

from crm import privacy
from messaging.events import CallEvent, DeliveryReport, DeliveryState, InboundSms
from messaging.models import CallDirection, CallState, GatewayEvent, Message, MessageStatus
from messaging.services.campaigns import campaign_run_plan, campaign_run_start
from messaging.services.dispatch import dispatch_due
from messaging.services.events import gateway_events_record, inbound_sms_receive
from messaging.services.outbox import link_click_record
from tests.messaging.conftest import NOW, World

pytestmark = pytest.mark.django_db


def sent(world: World) -> Message:
    world.campaign.landing_url = "https://shop.example/cats"
    world.campaign.save()
    campaign_run_plan(run=campaign_run_start(campaign=world.campaign, now=NOW), now=NOW)
    dispatch_due(now=NOW)
    message = Message.objects.get(client=world.clients[0])
    link_click_record(token=message.link_token or "", user_agent="Firefox")
    return message


def test_the_export_holds_the_clients_messages_and_clicks(world: World) -> None:
    message = sent(world)

    data = privacy.personal_data_collect(client_ids=[world.clients[0].pk])

    exported = data["clients"][0] if "clients" in data else data
    flat = repr(exported)
    assert message.text in flat
    assert "Firefox" in flat


def test_anonymization_blanks_texts_and_addresses_and_keeps_the_facts(world: World) -> None:
    message = sent(world)
    client = world.clients[0]

    privacy.client_anonymize_many(client_ids=[client.pk])

    message.refresh_from_db()
    assert (message.recipient, message.text, message.reason, message.link_token) == (
        "",
        "",
        "",
        None,
    )
    assert message.status == MessageStatus.SENT and message.offer_id == world.offer.pk
    assert message.clicks.get().user_agent == ""
    other = Message.objects.get(client=world.clients[1])
    assert other.text and other.recipient


def gateway_traffic(world: World) -> tuple[Message, str]:
    """A DLR for the first client's SMS, an inbound SMS and an incoming call from their number,
    and the same from the second client; returns the first's message and number."""
    message = sent(world)
    first, second = world.clients[0], world.clients[1]
    number = first.phone.as_e164
    events: list[Any] = [
        DeliveryReport(
            provider="kannel",
            external_id=f"k{message.pk}",
            state=DeliveryState.DELIVERED,
            occurred_at=NOW,
            message_id=message.pk,
            payload={"phone": number, "smsc": "fake"},
        ),
        CallEvent(
            provider="zadarma",
            call_id="in-1",
            state=CallState.RINGING,
            direction=CallDirection.INBOUND,
            occurred_at=NOW,
            from_number=number.removeprefix("+"),
            to_number="+78005553535",
            extension="101",
        ),
        CallEvent(
            provider="zadarma",
            call_id="in-2",
            state=CallState.RINGING,
            direction=CallDirection.INBOUND,
            occurred_at=NOW,
            from_number=second.phone.as_e164,
            to_number="+78005553535",
            extension="102",
        ),
    ]
    gateway_events_record(events=events)
    inbound_sms_receive(
        messages=[
            InboundSms(
                provider="kannel",
                external_id=f"mo-{c.pk}",
                sender="8" + c.phone.as_e164.removeprefix("+7"),
                recipient="1234",
                text=f"Привет от {c.pk}",
                occurred_at=NOW,
            )
            for c in (first, second)
        ]
    )
    return message, number


def test_the_export_holds_the_gateway_events_about_the_client(world: World) -> None:
    message, number = gateway_traffic(world)
    first = world.clients[0]

    data = privacy.personal_data_collect(client_ids=[first.pk, world.clients[1].pk])

    exported = {c["client_id"]: c["gateway_events"] for c in data["clients"]}
    by_client = [(row["kind"], row["external_id"]) for row in exported[first.pk]]
    assert number in repr(exported[first.pk])
    assert sorted(by_client) == sorted(
        [("dlr", f"k{message.pk}"), ("call", "in-1"), ("mo", f"mo-{first.pk}")]
    )


def test_anonymization_strips_numbers_and_texts_from_gateway_events(world: World) -> None:
    message, number = gateway_traffic(world)
    first, second = world.clients[0], world.clients[1]

    privacy.client_anonymize_many(client_ids=[first.pk])

    payloads = {e.external_id: e.payload for e in GatewayEvent.objects.all() if e.external_id}
    assert payloads[f"k{message.pk}"] == {"state": "delivered", "error": ""}
    assert payloads["in-1"]["extension"] == "101" and "from_number" not in payloads["in-1"]
    assert set(payloads[f"mo-{first.pk}"]) == set()
    # The other client's events are untouched.
    assert payloads["in-2"]["from_number"] == second.phone.as_e164
    assert payloads[f"mo-{second.pk}"]["text"] == f"Привет от {second.pk}"
