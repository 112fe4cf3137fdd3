"""Kannel with real peers: bearerbox + smsbox + fakesmsc, DLRs and MO through the real webhook."""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import quote

import pytest
import requests

from crm.models import Channel, Consent, ConsentSource
from messaging.models import EventKind, GatewayEvent, Message, MessageStatus
from messaging.models import InboundSms as InboundSmsRow
from messaging.peers.kannel import mo_text_ucs2
from messaging.peers.process import free_port
from messaging.services.dispatch import dispatch_due
from messaging.services.events import gateway_events_sweep
from tests.messaging.gateways.conftest import daytime_now, sms_messages, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def _use_kannel(settings: Any, peers: Any, live_server: Any, **options: Any) -> None:
    settings.SMS_BACKEND = "messaging.backends.kannel.KannelBackend"
    settings.SMS_BACKEND_OPTIONS = {
        "url": peers.config.sendsms_url,
        "dlr_url": f"{live_server.url}/hooks/kannel/dlr",
        **options,
    }


def _text(i: int) -> str:
    if i % 10 == 0:  # some long Cyrillic offers: concatenated UCS-2
        return f"Анна, для вас скидка 15% на корм Purina One до воскресенья. Код LICH{i:04d}. " * 2
    if i % 2:
        return f"Скидка {i % 30} % на ваш любимый корм, код LICH{i:04d}"
    return f"Sale {i % 30}% on your favourite food, code LICH{i:04d}"


def test_campaign_of_500_sms_every_dlr_attached_to_its_message(
    pg_web: Any, kannel: Any, settings: Any
) -> None:
    # Given Kannel with fakesmsc calling our webhook, served as in production, and 500 SMS
    peers = kannel(hooks_base=f"{pg_web.url}/hooks/kannel")
    _use_kannel(settings, peers, pg_web)
    messages = sms_messages(500, text=_text, phone=lambda i: f"+7916700{i:04d}")
    ids = {m.pk for m in messages}

    # When dispatch sends them all
    started = time.monotonic()
    result = dispatch_due(channels=[Channel.SMS], now=daytime_now())
    assert result.counts["sent"] == 500, result.counts

    # Then every "delivered" report comes back through the webhook
    def delivered() -> bool:
        gateway_events_sweep()
        # smsbox calls back in parallel: an "accepted by SMSC" (8) may land after its
        # "delivered" (1), so wait for every stored report to be applied, not only the 1s.
        waiting = GatewayEvent.objects.filter(processed_at__isnull=True).exists()
        done = Message.objects.filter(pk__in=ids, status=MessageStatus.DELIVERED).count() == 500
        return done and not waiting

    wait_until(delivered, timeout=120, what="500 delivery reports")
    elapsed = time.monotonic() - started
    rate = 500 / elapsed
    print(f"\nKannel + fakesmsc: 500 SMS sent and delivered in {elapsed:.1f} s = {rate:.0f} SMS/s")

    # ... attached to the right Message, one by one (our id travels in the dlr-url)
    reports = list(
        GatewayEvent.objects.filter(kind=EventKind.DELIVERY_REPORT, provider="kannel").values_list(
            "external_id", "sequence", "message_id", "processed_at"
        )
    )
    assert all(message_id == int(external) for external, _, message_id, _ in reports)
    assert all(processed is not None for *_, processed in reports)
    delivered_ids = {mid for _, seq, mid, _ in reports if seq == "1"}
    assert delivered_ids == ids
    assert len(reports) == len(set((e, s) for e, s, _, _ in reports))  # no duplicates stored
    for message in Message.objects.filter(pk__in=ids):
        assert message.status == MessageStatus.DELIVERED
        assert message.delivered_at is not None
        assert message.provider_id == f"kannel-{message.pk}"


def test_reports_sent_while_lichno_is_down_arrive_once_it_is_back(
    pg_web_start: Any, kannel: Any, settings: Any
) -> None:
    # Given Kannel calling back a Lichno that is not up (a restart, a deploy)
    port = free_port()
    peers = kannel(hooks_base=f"http://127.0.0.1:{port}/hooks/kannel")
    settings.SMS_BACKEND = "messaging.backends.kannel.KannelBackend"
    settings.SMS_BACKEND_OPTIONS = {
        "url": peers.config.sendsms_url,
        "dlr_url": f"http://127.0.0.1:{port}/hooks/kannel/dlr",
    }
    messages = sms_messages(20, text=_text, phone=lambda i: f"+7916710{i:04d}")
    ids = {m.pk for m in messages}
    assert dispatch_due(channels=[Channel.SMS], now=daytime_now()).counts["sent"] == 20

    # When every "delivered" report has failed once, and Lichno comes back
    def failed_once() -> set[int]:
        logs = "".join(p.read_text(errors="replace") for p in peers.config.workdir.glob("smsbox*"))
        return {
            int(i) for i in re.findall(r"Couldn't fetch <[^>]*dlr\?id=(\d+)&[^>]*type=1&", logs)
        }

    wait_until(lambda: failed_once() == ids, timeout=30, what="a failed callback per message")
    pg_web_start(port=port)

    # Then smsbox's retries bring every report, each attached to its message once
    def delivered() -> bool:
        gateway_events_sweep()
        return Message.objects.filter(pk__in=ids, status=MessageStatus.DELIVERED).count() == 20

    wait_until(delivered, timeout=60, what="the retried delivery reports")
    reports = list(
        GatewayEvent.objects.filter(provider="kannel", sequence="1").values_list(
            "message_id", flat=True
        )
    )
    assert sorted(reports) == sorted(ids)


def test_mo_stop_withdraws_consent_and_confirms_once(
    pg_live: Any, kannel: Any, settings: Any
) -> None:
    # Given a client with SMS consent and a queued offer
    (message,) = sms_messages(1, text=lambda i: "Скидка", phone=lambda i: "+79167771122")
    # When the client texts "СТОП" (UCS-2) and fakesmsc hands it to Kannel
    peers = kannel(
        hooks_base=f"{pg_live.url}/hooks/kannel",
        fake_mo=[f"79167771122 1234 ucs2 {mo_text_ucs2('СТОП')}"],
    )
    wait_until(lambda: InboundSmsRow.objects.exists(), timeout=20, what="the inbound SMS")
    # Then consent is withdrawn with source "inbound SMS", the offer cancelled, one confirmation
    row = InboundSmsRow.objects.get()
    assert (row.text, row.is_stop, row.client_id) == ("СТОП", True, message.client_id)
    consent = Consent.objects.get(client_id=message.client_id, channel=Channel.SMS)
    assert not consent.is_granted and consent.source == ConsentSource.INBOUND_SMS
    assert Message.objects.get(pk=message.pk).status == MessageStatus.CANCELLED
    confirmation = Message.objects.get(client_id=message.client_id, is_transactional=True)

    # A replay of the same callback (smsbox retrying) stores and sends nothing more
    event = GatewayEvent.objects.get(kind=EventKind.INBOUND_SMS)
    replay = (
        f"{pg_live.url}/hooks/kannel/mo?id={quote(event.external_id)}&from=79167771122&to=1234"
        f"&text={quote('СТОП')}&coding=0&charset=UTF-8&token={peers.config.secret}"
    )
    assert requests.get(replay, timeout=5).status_code == 200
    assert InboundSmsRow.objects.count() == 1
    assert Message.objects.filter(client_id=message.client_id, is_transactional=True).count() == 1

    # And the confirmation goes out through Kannel, although marketing consent is gone
    _use_kannel(settings, peers, pg_live)
    assert dispatch_due(channels=[Channel.SMS]).counts["sent"] == 1

    def confirmed() -> bool:
        gateway_events_sweep()  # what the periodic sweep does in production
        return Message.objects.get(pk=confirmation.pk).status == MessageStatus.DELIVERED

    wait_until(confirmed, timeout=20, what="the confirmation's delivery report")
