"""What an operator does from the card: call outcomes, spoken consent, send the offer now."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.test import Client as HttpClient
from django.urls import reverse
from django.utils import timezone

from crm.models import (
    Channel,
    Consent,
    ConsentEvent,
    ConsentPurpose,
    Event,
    EventType,
)
from messaging.models import (
    CallbackRequest,
    CallbackSource,
    CallbackStatus,
    Message,
    MessageStatus,
    NumberBlock,
)
from messaging.services.operator import (
    DO_NOT_CALL_WORDING,
    CallOutcome,
    call_outcome_record,
    offer_send_now,
)
from messaging.services.planning import Reason
from tests.card.conftest import Rich, make_rich_client, user_in
from tests.messaging.conftest import withdraw

pytestmark = pytest.mark.django_db

YEKT = ZoneInfo("Asia/Yekaterinburg")


def _consent(client: Any, channel: str) -> Consent:
    return Consent.objects.get(client=client, channel=channel, purpose=ConsentPurpose.MARKETING)


# Call outcomes -----------------------------------------------------------------------------------


def test_interested_is_a_call_event_and_nothing_else(operator: Any, rich: Rich) -> None:
    consents = ConsentEvent.objects.count()

    event = call_outcome_record(
        client=rich.client, user=operator, outcome=CallOutcome.INTERESTED, note="перезвонить"
    )

    assert (event.type, event.client_id) == (EventType.CALL_OUT, rich.client.pk)
    assert event.payload == {
        "outcome": "interested",
        "note": "перезвонить",
        "operator": "operator1",
        "operator_id": operator.pk,
    }
    assert ConsentEvent.objects.count() == consents
    assert not NumberBlock.objects.exists()


def test_do_not_call_withdraws_call_consent_blocks_the_number_and_cancels_calls(
    operator: Any, rich: Rich
) -> None:
    queued_call = Message.objects.create(
        client=rich.client,
        channel=Channel.CALL,
        recipient="+79123456789",
        text="Здравствуйте",
        scheduled_for=timezone.now() + dt.timedelta(hours=2),
        idempotency_key="test:call",
    )

    call_outcome_record(client=rich.client, user=operator, outcome=CallOutcome.DO_NOT_CALL)

    consent = _consent(rich.client, Channel.CALL)
    assert consent.is_granted is False
    assert (consent.source, consent.wording_version) == ("call_center", DO_NOT_CALL_WORDING)
    event = ConsentEvent.objects.latest("id")
    assert (event.actor_id, event.channel, event.action) == (operator.pk, "call", "withdrawn")
    assert _consent(rich.client, Channel.SMS).is_granted is True  # only calls
    assert list(NumberBlock.objects.values_list("phone", "reason")) == [
        ("+79123456789", "do_not_call")
    ]
    queued_call.refresh_from_db()
    assert queued_call.status == MessageStatus.CANCELLED


def test_wrong_number_blocks_the_number_only(operator: Any, rich: Rich) -> None:
    call_outcome_record(client=rich.client, user=operator, outcome=CallOutcome.WRONG_NUMBER)

    assert list(NumberBlock.objects.values_list("phone", "reason")) == [
        ("+79123456789", "wrong_number")
    ]
    assert _consent(rich.client, Channel.CALL).is_granted is True


def test_an_outcome_closes_the_callback_the_operator_took(operator: Any, rich: Rich) -> None:
    taken = CallbackRequest.objects.create(
        client=rich.client,
        source=CallbackSource.IVR,
        status=CallbackStatus.TAKEN,
        taken_by=operator,
    )
    other = CallbackRequest.objects.create(client=rich.client, source=CallbackSource.WEB)

    call_outcome_record(client=rich.client, user=operator, outcome=CallOutcome.NOT_NOW)

    taken.refresh_from_db()
    other.refresh_from_db()
    assert (taken.status, other.status) == (CallbackStatus.DONE, CallbackStatus.OPEN)


def test_outcome_form_records_and_confirms(operator_http: HttpClient, rich: Rich) -> None:
    response = operator_http.post(
        reverse("card:outcome", args=[rich.client.pk]),
        {"outcome": "not_now", "note": "в отпуске", "direction": "in"},
        follow=True,
    )

    assert response.status_code == 200
    assert "Call outcome recorded: not now." in response.content.decode()
    event = Event.objects.get(client=rich.client, type=EventType.CALL_IN)
    assert (event.type, event.payload["outcome"], event.payload["note"]) == (
        EventType.CALL_IN,
        "not_now",
        "в отпуске",
    )


def test_unknown_outcome_is_refused(operator_http: HttpClient, rich: Rich) -> None:
    response = operator_http.post(
        reverse("card:outcome", args=[rich.client.pk]), {"outcome": "maybe"}, follow=True
    )

    assert "Unknown call outcome." in response.content.decode()
    assert not Event.objects.filter(type__in=[EventType.CALL_IN, EventType.CALL_OUT]).exists()


# Spoken consent ----------------------------------------------------------------------------------


def test_spoken_consent_is_recorded_with_its_wording(
    operator: Any, operator_http: HttpClient, rich: Rich
) -> None:
    response = operator_http.post(
        reverse("card:consent", args=[rich.client.pk]),
        {"channel": "email", "action": "granted", "wording_version": "call-2026-03"},
        follow=True,
    )

    assert "Consent recorded: e-mail." in response.content.decode()
    consent = _consent(rich.client, Channel.EMAIL)
    assert (consent.is_granted, consent.source, consent.wording_version) == (
        True,
        "call_center",
        "call-2026-03",
    )
    assert ConsentEvent.objects.latest("id").actor_id == operator.pk


def test_spoken_withdrawal_needs_the_wording_version(operator_http: HttpClient, rich: Rich) -> None:
    refused = operator_http.post(
        reverse("card:consent", args=[rich.client.pk]),
        {"channel": "sms", "action": "withdrawn", "wording_version": " "},
        follow=True,
    )
    assert "The consent wording version is required." in refused.content.decode()
    assert _consent(rich.client, Channel.SMS).is_granted is True

    operator_http.post(
        reverse("card:consent", args=[rich.client.pk]),
        {"channel": "sms", "action": "withdrawn", "wording_version": "call-2026-03"},
    )
    assert _consent(rich.client, Channel.SMS).is_granted is False


# Send the offer now ------------------------------------------------------------------------------


def _local(hour: int) -> dt.datetime:
    """Today at ``hour`` in the client's city (Yekaterinburg), a weekday or not."""
    return timezone.now().astimezone(YEKT).replace(hour=hour, minute=0, second=0, microsecond=0)


def test_send_now_plans_the_sms_at_once_in_daytime(operator: Any) -> None:
    rich = make_rich_client(messages=0)
    now = _local(12)

    result = offer_send_now(client=rich.client, offer=rich.offer, user=operator, now=now)

    assert result.planned and not result.deferred
    assert result.detail == "The SMS is sent."
    message = Message.objects.get()
    assert (message.channel, message.status, message.scheduled_for) == ("sms", "planned", now)
    assert message.idempotency_key.startswith("operator:")
    assert message.offer_id == rich.offer.pk
    assert message.reason == "Мы подобрали это предложение специально для вас."
    assert "Корм Purina One" in message.text


def test_send_now_in_quiet_hours_is_planned_for_the_morning(operator: Any) -> None:
    rich = make_rich_client(messages=0)
    now = _local(23)

    result = offer_send_now(client=rich.client, offer=rich.offer, user=operator, now=now)

    assert result.planned and result.deferred
    local = result.message.scheduled_for.astimezone(YEKT)  # type: ignore[union-attr]
    assert local.date() == (now + dt.timedelta(days=1)).date()
    assert local.time() in (dt.time(9), dt.time(10))  # weekday or weekend window
    assert result.detail.startswith("Quiet hours: the SMS will go at ")
    assert f"{local:%H:%M}" in result.detail


def test_send_now_over_the_sms_cap_says_why(operator: Any) -> None:
    rich = make_rich_client(messages=0)
    now = _local(12)
    for days in (2, 3):
        Message.objects.create(
            client=rich.client,
            channel=Channel.SMS,
            recipient="+79123456789",
            text="другое",
            scheduled_for=now - dt.timedelta(days=days),
            sent_at=now - dt.timedelta(days=days),
            status=MessageStatus.DELIVERED,
            idempotency_key=f"test:cap:{days}",
        )

    result = offer_send_now(client=rich.client, offer=rich.offer, user=operator, now=now)

    assert not result.planned
    assert result.reason == Reason.CHANNEL_CAP
    assert result.detail == "Not sent: SMS limit reached (2 in 7 days)."
    assert Message.objects.count() == 2


def test_send_now_without_consent_says_why(operator: Any) -> None:
    rich = make_rich_client(messages=0)
    withdraw(rich.client, Channel.SMS)

    result = offer_send_now(client=rich.client, offer=rich.offer, user=operator, now=_local(12))

    assert (result.planned, result.reason) == (False, Reason.NO_CONSENT)
    assert result.detail == "Not sent: the client has not consented to marketing SMS."
    assert not Message.objects.exists()


def test_send_button_shows_the_block_reason(operator_http: HttpClient) -> None:
    rich = make_rich_client(messages=0)
    withdraw(rich.client, Channel.SMS)

    response = operator_http.post(
        reverse("card:send-offer", args=[rich.client.pk]), {"offer": rich.offer.pk}, follow=True
    )

    assert response.status_code == 200
    assert "Not sent: the client has not consented to marketing SMS." in response.content.decode()
    assert not Message.objects.exists()


def test_send_button_plans_the_message(operator_http: HttpClient) -> None:
    rich = make_rich_client(messages=0)

    response = operator_http.post(
        reverse("card:send-offer", args=[rich.client.pk]), {"offer": rich.offer.pk}, follow=True
    )

    message = Message.objects.get()
    assert (message.client_id, message.status, message.offer_id) == (
        rich.client.pk,
        "planned",
        rich.offer.pk,
    )
    page = response.content.decode()
    assert "The SMS is sent." in page or "Quiet hours: the SMS will go at" in page


# Permissions -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("card:outcome", {"outcome": "do_not_call"}),
        ("card:consent", {"channel": "sms", "action": "withdrawn", "wording_version": "v9"}),
        ("card:send-offer", {}),
        ("card:call", {}),
    ],
)
def test_staff_without_the_operator_group_may_not_act(name: str, data: dict, rich: Rich) -> None:
    http = HttpClient()
    http.force_login(user_in(None, "clerk"))
    if name == "card:send-offer":
        data = {"offer": rich.offer.pk}
    consents = ConsentEvent.objects.count()

    response = http.post(reverse(name, args=[rich.client.pk]), data)

    assert response.status_code == 403
    assert ConsentEvent.objects.count() == consents
    assert not NumberBlock.objects.exists()
    assert Message.objects.filter(idempotency_key__startswith="operator:").count() == 0


def test_actions_are_post_only(operator_http: HttpClient, rich: Rich) -> None:
    response = operator_http.get(reverse("card:outcome", args=[rich.client.pk]))

    assert response.status_code == 405


def test_click_to_call_without_an_extension_asks_for_one(
    operator_http: HttpClient, rich: Rich
) -> None:
    response = operator_http.post(reverse("card:call", args=[rich.client.pk]), follow=True)

    assert "Set your PBX extension first" in response.content.decode()


def test_click_to_call_rings_the_operators_extension_then_the_client(
    operator: Any, operator_http: HttpClient, rich: Rich, settings: Any
) -> None:
    from tests.card import pbx

    settings.VOICE_PBX_BACKEND = "tests.card.pbx.RecordingPbx"
    settings.VOICE_PBX_BACKEND_OPTIONS = {}
    pbx.reset()
    operator_http.post(reverse("card:extension"), {"extension": "101"})

    response = operator_http.post(reverse("card:call", args=[rich.client.pk]), follow=True)

    assert "Calling: your phone 101 rings first." in response.content.decode()
    assert pbx.originated == [
        {"extension": "101", "number": "+79123456789", "reference": f"card:{operator.pk}"}
    ]
