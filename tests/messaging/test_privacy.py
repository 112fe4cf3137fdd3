"""Messaging's part of the personal-data export and of anonymization."""

from __future__ import annotations

import pytest

from crm import privacy
from messaging.models import Message, MessageStatus
from messaging.services.campaigns import campaign_run_plan, campaign_run_start
from messaging.services.dispatch import dispatch_due
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
