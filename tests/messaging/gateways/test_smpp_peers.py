"""The SMPP simulator as a real peer: for our ``smpp`` backend and for Kannel (``smsc = smpp``).

Correlation is checked per message against the simulator's own journal (which id it gave to
which destination), not against our bookkeeping, and not by counting.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from crm.models import Channel
from messaging.backends.smpp import SmppListener
from messaging.models import EventKind, GatewayEvent, Message, MessageStatus
from messaging.services.dispatch import dispatch_due
from messaging.services.events import gateway_events_sweep
from tests.messaging.gateways.conftest import daytime_now, read_journal, sms_messages, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

COUNT = 2000
FINAL = [MessageStatus.DELIVERED, MessageStatus.UNDELIVERED, MessageStatus.FAILED]


def _phone(i: int) -> str:
    return f"+7916{900_0000 + i:07d}"


def _text(i: int) -> str:
    return f"Скидка {i % 30} % для вас, код LICH{i:04d}" if i % 2 else f"Sale {i}% off, code {i}"


def _expected(recipient: str) -> str:
    """What the simulator's rule (undeliv:*13, reject:*99) makes of each number."""
    if recipient.endswith("99"):
        return MessageStatus.FAILED
    if recipient.endswith("13"):
        return MessageStatus.UNDELIVERED
    return MessageStatus.DELIVERED


def _wait_final(ids: set[int], timeout: float) -> None:
    def done() -> bool:
        gateway_events_sweep()  # the periodic task's job
        return Message.objects.filter(pk__in=ids, status__in=FINAL).count() == len(ids)

    wait_until(done, timeout=timeout, what=f"{len(ids)} final states")


@pytest.fixture
def listener(settings: Any) -> Iterator[Any]:
    """``manage.py smpp_listener`` in a thread: receipts arriving after the send session closed."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(port: int) -> SmppListener:
        listen = SmppListener(host="127.0.0.1", port=port, system_id="lichno", password="x")
        thread = threading.Thread(target=listen.run, args=(stop,), daemon=True)
        thread.start()
        threads.append(thread)
        return listen

    yield start
    stop.set()
    for thread in threads:
        thread.join(timeout=10)


def test_smpp_backend_2000_messages_zero_miscorrelated_receipts(
    postgres: None, smsc: Any, listener: Any, settings: Any
) -> None:
    # Given the simulator (failing *13 on the handset, refusing *99) and 2,000 planned SMS
    _, port, journal = smsc()
    settings.SMS_BACKEND = "messaging.backends.smpp.SmppBackend"
    settings.SMS_BACKEND_OPTIONS = {
        "host": "127.0.0.1",
        "port": port,
        "system_id": "lichno",
        "password": "x",
        "window": 100,
    }
    messages = sms_messages(COUNT, text=_text, phone=_phone)
    ids = {m.pk for m in messages}

    # When dispatch sends them and a listener stays bound for late receipts
    started = time.monotonic()
    result = dispatch_due(channels=[Channel.SMS], now=daytime_now(), chunk_size=500)
    listener(port)
    _wait_final(ids, timeout=120)
    elapsed = time.monotonic() - started
    print(
        f"\nsmpp backend: {COUNT} SMS, receipts applied, in {elapsed:.1f} s = "
        f"{COUNT / elapsed:.0f} SMS/s ({result})"
    )

    # Then each message has the state its number called for ...
    truth = read_journal(journal)  # SMSC id -> destination, from the simulator
    for message in Message.objects.filter(pk__in=ids):
        expected = _expected(message.recipient)
        assert message.status == expected, (message.recipient, message.status, message.error)
        if expected == MessageStatus.FAILED:  # refused at submit_sm: no id, no receipt
            assert message.provider_id == "" and "0x0b" in message.error
            continue
        # ... its id is the one the SMSC gave to its number ...
        assert truth[message.provider_id] == message.recipient.lstrip("+")
    # ... and every receipt is attached to the message the SMSC sent it for: none mis-correlated
    receipts = GatewayEvent.objects.filter(kind=EventKind.DELIVERY_REPORT, provider="smpp")
    recipients = dict(Message.objects.filter(pk__in=ids).values_list("pk", "recipient"))
    attached = 0
    for external_id, message_id, sequence in receipts.values_list(
        "external_id", "message_id", "sequence"
    ):
        assert message_id is not None, external_id
        assert truth[external_id] == recipients[message_id].lstrip("+")
        assert sequence == ("UNDELIV" if recipients[message_id].endswith("13") else "DELIVRD")
        attached += 1
    assert attached == sum(1 for p in recipients.values() if not p.endswith("99"))


def test_kannel_over_smpp_2000_messages_zero_miscorrelated_reports(
    pg_live: Any, smsc: Any, kannel: Any, settings: Any
) -> None:
    # Given Kannel bound to the simulator (decimal ids both ways: msg-id-type 0x00)
    _, port, journal = smsc()
    peers = kannel(
        hooks_base=f"{pg_live.url}/hooks/kannel",
        smpp_port=port,
        smpp_system_id="kannel",
        smpp_msg_id_type=0x00,
    )
    settings.SMS_BACKEND = "messaging.backends.kannel.KannelBackend"
    settings.SMS_BACKEND_OPTIONS = {
        "url": peers.config.sendsms_url,
        "dlr_url": f"{pg_live.url}/hooks/kannel/dlr",
    }
    messages = sms_messages(COUNT, text=_text, phone=_phone)
    ids = {m.pk for m in messages}
    # Kannel connects to the SMSC asynchronously; the first sendsms may be queued (answer 3)
    started = time.monotonic()
    result = dispatch_due(channels=[Channel.SMS], now=daytime_now(), chunk_size=500)
    assert result.counts["sent"] == COUNT, result.counts
    _wait_final(ids, timeout=120)
    elapsed = time.monotonic() - started
    print(
        f"\nKannel over SMPP: {COUNT} SMS, DLRs applied, in {elapsed:.1f} s = "
        f"{COUNT / elapsed:.0f} SMS/s ({result})"
    )

    truth = read_journal(journal)
    final = {
        int(ext): (seq, payload)
        for ext, seq, payload in GatewayEvent.objects.filter(
            kind=EventKind.DELIVERY_REPORT, provider="kannel", sequence__in=["1", "2", "16"]
        ).values_list("external_id", "sequence", "payload")
    }
    for message in Message.objects.filter(pk__in=ids):
        expected = _expected(message.recipient)
        assert message.status == expected, (message.recipient, message.status)
        sequence, payload = final[message.pk]
        assert sequence == {"delivered": "1", "undelivered": "2", "failed": "16"}[expected]
        if expected != MessageStatus.FAILED:
            # The receipt Kannel attached to our dlr-url names the SMSC id of this very number
            receipt = re.search(r"id:(\w+)", payload["reply"])
            assert receipt is not None
            smsc_id = receipt.group(1)
            assert truth[smsc_id].lstrip("+") == message.recipient.lstrip("+")
