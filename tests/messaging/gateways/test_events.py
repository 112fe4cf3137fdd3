"""Delivery reports, inbound SMS and STOP: stored once, applied forward only, confirmed once."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from crm.models import Channel, Consent, ConsentEvent, ConsentSource
from messaging.events import KANNEL_DLR_STATES, DeliveryReport, DeliveryState, InboundSms
from messaging.models import EventKind, GatewayEvent, Message, MessageStatus
from messaging.models import InboundSms as InboundSmsRow
from messaging.services.events import (
    delivery_reports_apply,
    delivery_reports_record_and_apply,
    gateway_events_record,
    gateway_events_sweep,
    inbound_sms_receive,
    is_stop_text,
)
from tests.messaging.gateways.conftest import sms_messages

pytestmark = pytest.mark.django_db


def _sent(count: int = 3) -> list[Message]:
    messages = sms_messages(count, text=lambda i: f"Offer {i}", phone=lambda i: f"+7916500{i:04d}")
    Message.objects.filter(pk__in=[m.pk for m in messages]).update(
        status=MessageStatus.SENT, provider_id="", sent_at=timezone.now()
    )
    return messages


def _dlr(message: Message, kannel_type: int, **kw: Any) -> DeliveryReport:
    return DeliveryReport(
        provider="kannel",
        external_id=str(message.pk),
        message_id=message.pk,
        state=KANNEL_DLR_STATES[kannel_type],
        sequence=str(kannel_type),
        occurred_at=timezone.now(),
        **kw,
    )


def _status(message: Message) -> str:
    return Message.objects.values_list("status", flat=True).get(pk=message.pk)


def test_kannel_dlr_types_map_to_message_states() -> None:
    # Given four sent messages
    a, b, c, d = _sent(4)
    # When Kannel reports 1 (delivered), 2 (undelivered), 16 (rejected) and 8 then 4
    delivery_reports_record_and_apply(
        reports=[_dlr(a, 1), _dlr(b, 2), _dlr(c, 16), _dlr(d, 8), _dlr(d, 4)]
    )
    # Then the states follow, and "accepted"/"buffered" leave a message sent
    assert [_status(m) for m in (a, b, c, d)] == ["delivered", "undelivered", "failed", "sent"]
    assert Message.objects.get(pk=a.pk).delivered_at is not None
    assert not GatewayEvent.objects.filter(processed_at__isnull=True).exists()


def test_status_only_moves_forward_and_replays_change_nothing() -> None:
    (message,) = _sent(1)
    delivery_reports_record_and_apply(reports=[_dlr(message, 1)])
    delivered_at = Message.objects.get(pk=message.pk).delivered_at
    # A late "accepted by SMSC" and a replay of "delivered" arrive afterwards
    delivery_reports_record_and_apply(reports=[_dlr(message, 8), _dlr(message, 1)])
    assert _status(message) == MessageStatus.DELIVERED
    assert Message.objects.get(pk=message.pk).delivered_at == delivered_at
    # The replay was not stored twice
    assert GatewayEvent.objects.filter(external_id=str(message.pk)).count() == 2


def test_out_of_order_reports_in_one_batch_apply_the_furthest() -> None:
    (message,) = _sent(1)
    delivery_reports_record_and_apply(reports=[_dlr(message, 1), _dlr(message, 8)])
    assert _status(message) == MessageStatus.DELIVERED


def test_failure_outranks_delivery_of_another_part_but_not_the_reverse() -> None:
    one, two = _sent(2)
    delivery_reports_record_and_apply(reports=[_dlr(one, 1)])
    delivery_reports_record_and_apply(reports=[_dlr(one, 2)])
    delivery_reports_record_and_apply(reports=[_dlr(two, 2)])
    delivery_reports_record_and_apply(reports=[_dlr(two, 1)])
    assert (_status(one), _status(two)) == ("undelivered", "undelivered")


def test_report_before_the_message_is_marked_sent_waits_then_applies() -> None:
    (message,) = sms_messages(1, text=lambda i: "x", phone=lambda i: "+79165551234")
    Message.objects.filter(pk=message.pk).update(status=MessageStatus.QUEUED)
    result = delivery_reports_record_and_apply(reports=[_dlr(message, 1)])
    assert result.waiting == 1 and _status(message) == MessageStatus.QUEUED
    # Dispatch records the send, then applies what waited for these messages
    Message.objects.filter(pk=message.pk).update(status=MessageStatus.SENT)
    assert delivery_reports_apply(message_ids=[message.pk]).changed == 1
    assert _status(message) == MessageStatus.DELIVERED


def test_reports_without_our_id_match_the_provider_id() -> None:
    a, b = _sent(2)
    Message.objects.filter(pk=a.pk).update(provider_id="9001")
    Message.objects.filter(pk=b.pk).update(provider_id="9002")
    now = timezone.now()
    reports = [
        DeliveryReport("smpp", "9002", DeliveryState.UNDELIVERED, now, sequence="UNDELIV"),
        DeliveryReport("smpp", "9001", DeliveryState.DELIVERED, now, sequence="DELIVRD"),
        DeliveryReport("smpp", "7777", DeliveryState.DELIVERED, now, sequence="DELIVRD"),
    ]
    result = delivery_reports_record_and_apply(reports=reports)
    assert (_status(a), _status(b)) == ("delivered", "undelivered")
    assert dict(
        GatewayEvent.objects.filter(provider="smpp").values_list("external_id", "message_id")
    ) == {"9001": a.pk, "9002": b.pk, "7777": None}
    assert result.waiting == 1  # an unknown id waits (its Message may not be committed yet)


def test_sweep_pages_past_reports_that_still_wait() -> None:
    messages = _sent(3)
    queued = sms_messages(3, text=lambda i: "x", phone=lambda i: f"+7916600{i:04d}")
    Message.objects.filter(pk__in=[m.pk for m in queued]).update(status=MessageStatus.QUEUED)
    gateway_events_record(events=[_dlr(m, 1) for m in queued + messages])
    result = gateway_events_sweep(limit=2)
    assert result.changed == 3 and result.waiting == 3
    assert {_status(m) for m in messages} == {"delivered"}


def test_recording_is_set_based(django_assert_max_num_queries: Any) -> None:
    messages = _sent(50)
    reports = [_dlr(m, 1) for m in messages]
    with django_assert_max_num_queries(8):
        delivery_reports_record_and_apply(reports=reports)
    assert Message.objects.filter(status=MessageStatus.DELIVERED).count() == 50


@pytest.mark.parametrize(
    ("text", "stop"),
    [
        ("STOP", True),
        ("стоп", True),
        (" Стоп! ", True),
        ("ОТПИСКА", True),
        ("отписаться.", True),
        ("stop it please", False),
        ("Спасибо", False),
    ],
)
def test_stop_words(text: str, stop: bool) -> None:
    assert is_stop_text(text) is stop


def test_stop_words_come_from_settings(settings: Any) -> None:
    settings.SMS_STOP_WORDS = ["ХВАТИТ"]
    assert is_stop_text("хватит") and not is_stop_text("STOP")


def _mo(text: str, sender: str, external_id: str = "mo-1") -> InboundSms:
    return InboundSms("kannel", external_id, sender, "1234", text, timezone.now())


def test_inbound_stop_withdraws_sms_consent_and_confirms_once() -> None:
    (message,) = sms_messages(1, text=lambda i: "offer", phone=lambda i: "+79161112233")
    client_id = message.client_id
    # When the client answers "СТОП" (written the local way) and the gateway replays it
    first = inbound_sms_receive(messages=[_mo("СТОП", "89161112233")])
    replay = inbound_sms_receive(messages=[_mo("СТОП", "89161112233")])
    # Then consent is withdrawn from the inbound SMS, the queued offer cancelled ...
    consent = Consent.objects.get(client_id=client_id, channel=Channel.SMS)
    assert not consent.is_granted and consent.source == ConsentSource.INBOUND_SMS
    assert _status(message) == MessageStatus.CANCELLED
    assert first.withdrawn_client_ids == [client_id] and replay.received == []
    # ... and exactly one confirmation is queued, transactional
    confirmations = Message.objects.filter(client_id=client_id, is_transactional=True)
    assert confirmations.count() == 1
    assert confirmations.get().recipient == "+79161112233"
    row = InboundSmsRow.objects.get()
    assert (row.client_id, row.is_stop, row.sender) == (client_id, True, "+79161112233")
    assert ConsentEvent.objects.filter(client_id=client_id, action="withdrawn").count() == 1


def test_inbound_text_that_is_not_stop_changes_no_consent() -> None:
    (message,) = sms_messages(1, text=lambda i: "offer", phone=lambda i: "+79161112244")
    inbound_sms_receive(messages=[_mo("Спасибо, а есть доставка?", "+79161112244")])
    assert Consent.objects.get(client_id=message.client_id, channel=Channel.SMS).is_granted
    assert InboundSmsRow.objects.get().is_stop is False
    assert not Message.objects.filter(is_transactional=True).exists()


def test_stop_from_an_unknown_number_is_kept_without_a_client() -> None:
    inbound_sms_receive(messages=[_mo("STOP", "+79169998877")])
    row = InboundSmsRow.objects.get()
    assert row.client_id is None and row.is_stop
    assert GatewayEvent.objects.get(kind=EventKind.INBOUND_SMS).processed_at is not None


def test_events_older_than_a_day_without_a_message_are_closed() -> None:
    old = timezone.now() - dt.timedelta(days=2)
    gateway_events_record(
        events=[DeliveryReport("smpp", "nobody", DeliveryState.DELIVERED, old, sequence="D")]
    )
    GatewayEvent.objects.update(received_at=old)
    assert delivery_reports_apply().applied == 1
    assert GatewayEvent.objects.get().processed_at is not None
