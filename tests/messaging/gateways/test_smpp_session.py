"""The smpp backend's session against the simulator: throttling, refusals, link loss, MO."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from crm.models import Channel, Consent, ConsentSource
from messaging.backends.base import OutgoingMessage, RetryableGatewayError, SendStatus
from messaging.backends.smpp import SmppBackend, SmppListener
from messaging.backends.smsparts import sms_part_count
from messaging.models import EventKind, GatewayEvent, Message, MessageStatus
from messaging.models import InboundSms as InboundSmsRow
from messaging.peers.process import free_port
from tests.messaging.gateways.conftest import read_journal, sms_messages, wait_until


def _outgoing(messages: list[Message]) -> list[OutgoingMessage]:
    return [OutgoingMessage(m.pk, m.idempotency_key, "sms", m.recipient, m.text) for m in messages]


@pytest.mark.django_db
def test_throttled_submits_are_retried_and_refusals_fail_permanently(smsc: Any) -> None:
    # Given the simulator throttles the first submit to *55 and refuses *99
    _, port, journal = smsc(fail_rule="throttle:*55,reject:*99")
    phones = ["+79161000055", "+79161000099", "+79161000001"]
    messages = sms_messages(3, text=lambda i: "Скидка " * 30, phone=lambda i: phones[i])
    backend = SmppBackend(channel="sms", host="127.0.0.1", port=port, system_id="t", password="x")
    # When the backend sends them (the long Cyrillic text goes in UCS-2 parts)
    with backend:
        throttled, refused, plain = backend.send_messages(_outgoing(messages))
    # Then the throttled one went through on a retry, the refused one failed for good
    assert throttled.status == SendStatus.SENT and plain.status == SendStatus.SENT
    assert refused.status == SendStatus.FAILED and "0x0b" in refused.error
    truth = read_journal(journal)
    parts = [smsc_id for smsc_id, to in truth.items() if to == "79161000001"]
    assert len(parts) == sms_part_count(messages[2].text) == 4
    assert plain.provider_id in parts  # the first part's id
    # Receipts read before unbinding are stored against the right message, every part
    receipts = GatewayEvent.objects.filter(kind=EventKind.DELIVERY_REPORT)
    assert {e.external_id: e.message_id for e in receipts if e.message_id == messages[2].pk} == {
        p: messages[2].pk for p in parts
    }


def test_an_unreachable_smsc_is_a_retryable_error() -> None:
    port = free_port()  # nothing listens there
    backend = SmppBackend(
        channel="sms", host="127.0.0.1", port=port, reconnect_attempts=2, timeout=1
    )
    started = time.monotonic()
    with pytest.raises(RetryableGatewayError):
        backend.open()
    assert time.monotonic() - started < 5  # bounded backoff


@pytest.mark.django_db(transaction=True)
def test_inbound_stop_over_smpp_reaches_the_listener(smsc: Any, settings: Any) -> None:
    settings.SMS_BACKEND = "messaging.backends.locmem.LocmemBackend"
    (message,) = sms_messages(1, text=lambda i: "Скидка", phone=lambda i: "+79162000077")
    _, port, _ = smsc(fail_rule="", mo=["79162000077:1234:Отписка"])
    stop = threading.Event()
    listener = SmppListener(host="127.0.0.1", port=port, system_id="lichno", password="x")
    thread = threading.Thread(target=listener.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_until(lambda: InboundSmsRow.objects.exists(), timeout=20, what="the MO")
    finally:
        stop.set()
        thread.join(timeout=10)
    row = InboundSmsRow.objects.get()
    assert (row.provider, row.text, row.is_stop, row.client_id) == (
        "smpp",
        "Отписка",
        True,
        message.client_id,
    )
    consent = Consent.objects.get(client_id=message.client_id, channel=Channel.SMS)
    assert not consent.is_granted and consent.source == ConsentSource.INBOUND_SMS
    assert Message.objects.get(pk=message.pk).status == MessageStatus.CANCELLED
    assert Message.objects.filter(client_id=message.client_id, is_transactional=True).count() == 1
