"""Zadarma and Mango Office backends against local servers that reproduce their documented APIs.

Our requests must carry the provider's signature; their webhooks are verified, stored once and
applied in order, so replays and out-of-order deliveries change nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client as HttpClient
from django.utils import timezone

from crm.celery import app as celery_app
from crm.models import Channel, Consent, ConsentEvent
from messaging.backends import OutgoingMessage, SendStatus, get_backend
from messaging.backends.base import PermanentGatewayError
from messaging.models import (
    Call,
    CallbackRequest,
    CallDirection,
    CallState,
    GatewayEvent,
    Message,
    MessageStatus,
    NumberBlock,
)
from messaging.peers.pbx_fake import MangoFake, ZadarmaFake
from messaging.selectors_calls import incoming_calls_for_extension
from messaging.services.calls import click_to_call
from tests.factories import ClientFactory
from tests.messaging.voice.conftest import grant_calls

pytestmark = pytest.mark.django_db

KEY, SECRET = "zd-key", "zd-secret"
MANGO_KEY, MANGO_SALT = "mango-key", "mango-salt"
IVR = "100"  # the PBX voice menu autodial connects clients to


@pytest.fixture
def eager(django_capture_on_commit_callbacks: Any) -> Iterator[Any]:
    """Hooks hand work to a task after commit: run both inline, as a worker would."""
    celery_app.conf.task_always_eager = True
    try:
        yield django_capture_on_commit_callbacks
    finally:
        celery_app.conf.task_always_eager = False


@pytest.fixture
def zadarma(settings: Any) -> Iterator[ZadarmaFake]:
    fake = ZadarmaFake(KEY, SECRET).start()
    settings.VOICE_BACKEND = "messaging.backends.zadarma.ZadarmaBackend"
    settings.VOICE_BACKEND_OPTIONS = {
        "key": KEY,
        "secret": SECRET,
        "base_url": fake.url,
        "autodial_to": IVR,
    }
    settings.VOICE_PBX_BACKEND = ""
    settings.HOOKS_ZADARMA_ALLOWED_IPS = ["127.0.0.1"]
    yield fake
    fake.stop()


@pytest.fixture
def mango(settings: Any) -> Iterator[MangoFake]:
    fake = MangoFake(MANGO_KEY, MANGO_SALT).start()
    settings.VOICE_BACKEND = "messaging.backends.mango.MangoBackend"
    settings.VOICE_BACKEND_OPTIONS = {
        "api_key": MANGO_KEY,
        "api_salt": MANGO_SALT,
        "base_url": fake.base_url,
        "autodial_extension": IVR,
    }
    settings.VOICE_PBX_BACKEND = ""
    settings.HOOKS_MANGO_ALLOWED_IPS = ["127.0.0.1"]
    yield fake
    fake.stop()


def outgoing(message: Message) -> OutgoingMessage:
    return OutgoingMessage(
        id=message.pk,
        idempotency_key=message.idempotency_key,
        channel=Channel.CALL,
        to=message.recipient,
        text=message.text,
    )


def sent(make_call: Any, client: Any, provider_id: str) -> Message:
    message = make_call(client)
    Message.objects.filter(pk=message.pk).update(provider_id=provider_id)
    return message


# Zadarma --------------------------------------------------------------------------------------


def test_zadarma_click_to_call_is_signed_as_documented(zadarma: ZadarmaFake) -> None:
    client = ClientFactory(phone="+79161234567")

    click_to_call(operator_extension="101", client=client)

    assert zadarma.requests == [{"from": "101", "to": "79161234567", "format": "json"}]
    assert zadarma.rejected == []


def test_zadarma_refuses_a_wrong_secret(zadarma: ZadarmaFake, settings: Any) -> None:
    settings.VOICE_BACKEND_OPTIONS = {**settings.VOICE_BACKEND_OPTIONS, "secret": "wrong"}

    with pytest.raises(PermanentGatewayError, match="401"):
        click_to_call(operator_extension="101", client=ClientFactory())

    assert zadarma.requests == [] and len(zadarma.rejected) == 1


def test_zadarma_autodial_rings_the_client_into_the_voice_menu(
    zadarma: ZadarmaFake, make_call: Any
) -> None:
    message = make_call(ClientFactory(phone="+79161234567"), status=MessageStatus.QUEUED)

    results = get_backend(Channel.CALL).send_messages([outgoing(message)])

    assert [(r.status, r.provider_id) for r in results] == [
        (SendStatus.SENT, f"zadarma-{message.pk}")
    ]
    assert zadarma.requests == [{"from": "79161234567", "to": IVR, "format": "json"}]


def test_zadarma_echo_and_signature(zadarma: ZadarmaFake, client: HttpClient) -> None:
    assert client.get("/hooks/zadarma/?zd_echo=abc123").content == b"abc123"
    fields, _ = zadarma.webhook(
        event="NOTIFY_START",
        pbx_call_id="in-1",
        caller_id="79161234567",
        called_did="74951234567",
        call_start="2026-03-04 12:00:00",
    )
    forged = client.post("/hooks/zadarma/", fields, HTTP_SIGNATURE="bm9wZQ==")
    assert forged.status_code == 403
    assert not GatewayEvent.objects.exists()


def test_zadarma_incoming_call_pops_up_for_the_operator(
    zadarma: ZadarmaFake, client: HttpClient, eager: Any
) -> None:
    caller = ClientFactory(phone="+79161234567")
    start = {
        "pbx_call_id": "in-7",
        "caller_id": "79161234567",
        "called_did": "74951234567",
        "call_start": "2026-03-04 12:00:00",
    }
    since = timezone.now() - dt.timedelta(minutes=1)

    with eager(execute=True):
        for event in ("NOTIFY_START", "NOTIFY_INTERNAL"):
            fields, headers = zadarma.webhook(event=event, internal="101", **start)
            response = client.post("/hooks/zadarma/", fields, headers=headers)
            assert response.status_code == 200

    (call,) = incoming_calls_for_extension("101", since)
    assert (call.client_id, call.direction, call.state, call.extension) == (
        caller.pk,
        CallDirection.INBOUND,
        CallState.RINGING,
        "101",
    )
    assert list(incoming_calls_for_extension("102", since)) == []


def test_zadarma_autodial_outcome_press_1_replays_and_disorder(
    zadarma: ZadarmaFake, client: HttpClient, eager: Any, make_call: Any
) -> None:
    person = ClientFactory(phone="+79161234567", time_zone="Europe/Moscow")
    message = sent(make_call, person, "zadarma-{}")
    leg = {
        "pbx_call_id": "out-1",
        "caller_id": "79161234567",
        "called_did": IVR,
        "call_start": "2026-03-04 12:00:00",
    }
    end = zadarma.webhook(event="NOTIFY_END", disposition="answered", duration="14", **leg)
    ivr = zadarma.webhook(
        event="NOTIFY_IVR", **{"wait_dtmf[digits]": "1", "wait_dtmf[name]": "offer"}, **leg
    )
    start = zadarma.webhook(event="NOTIFY_START", **leg)

    with eager(execute=True):
        # The end first, then the digit twice, then the start: replays and disorder.
        for fields, headers in (end, ivr, ivr, start, end):
            assert client.post("/hooks/zadarma/", fields, headers=headers).status_code == 200

    message.refresh_from_db()
    assert (message.status, message.dtmf, message.call_duration) == (
        MessageStatus.ANSWERED,
        "1",
        14,
    )
    call = Call.objects.get()
    assert (call.message_id, call.client_id, call.state, call.disposition) == (
        message.pk,
        person.pk,
        CallState.ENDED,
        "answered",
    )
    assert CallbackRequest.objects.filter(message=message).count() == 1
    assert GatewayEvent.objects.count() == 3
    assert not GatewayEvent.objects.filter(processed_at__isnull=True).exists()


def test_zadarma_busy_schedules_one_retry(
    zadarma: ZadarmaFake, client: HttpClient, eager: Any, make_call: Any
) -> None:
    message = sent(make_call, ClientFactory(phone="+79161234567"), "zadarma-x")
    leg = {
        "pbx_call_id": "out-2",
        "caller_id": "79161234567",
        "called_did": IVR,
        "call_start": "2026-03-04 12:00:00",
    }
    end = zadarma.webhook(event="NOTIFY_END", disposition="busy", duration="0", **leg)

    with eager(execute=True):
        for fields, headers in (end, end):
            client.post("/hooks/zadarma/", fields, headers=headers)

    message.refresh_from_db()
    assert message.status == MessageStatus.BUSY
    assert Message.objects.filter(idempotency_key=f"{message.idempotency_key}#r2").count() == 1


# Mango Office ---------------------------------------------------------------------------------


def test_mango_click_to_call_is_signed_as_documented(mango: MangoFake) -> None:
    client = ClientFactory(phone="+79161234567")

    command_id = click_to_call(operator_extension="101", client=client, reference="c2c-1")

    assert command_id == "c2c-1"
    assert mango.requests == [
        {"command_id": "c2c-1", "from": {"extension": "101"}, "to_number": "79161234567"}
    ]


def test_mango_refuses_a_wrong_salt(mango: MangoFake, settings: Any) -> None:
    settings.VOICE_BACKEND_OPTIONS = {**settings.VOICE_BACKEND_OPTIONS, "api_salt": "wrong"}

    with pytest.raises(PermanentGatewayError, match="401"):
        click_to_call(operator_extension="101", client=ClientFactory())

    assert mango.requests == [] and len(mango.rejected) == 1


def test_mango_autodial_press_2_out_of_order_and_replayed(
    mango: MangoFake, client: HttpClient, eager: Any, make_call: Any
) -> None:
    person = ClientFactory(phone="+79161234567", time_zone="Europe/Moscow")
    grant_calls([person])
    message = make_call(person, status=MessageStatus.QUEUED)
    (result,) = get_backend(Channel.CALL).send_messages([outgoing(message)])
    assert mango.requests == [
        {
            "command_id": f"lichno-msg-{message.pk}",
            "from": {"extension": IVR},
            "to_number": "79161234567",
        }
    ]
    Message.objects.filter(pk=message.pk).update(
        status=MessageStatus.SENT, provider_id=result.provider_id
    )
    base = {
        "entry_id": "E1",
        "call_id": "L2",
        "command_id": result.provider_id,
        "from": {"extension": IVR},
        "to": {"number": "79161234567"},
    }
    t0 = int(timezone.now().timestamp())
    appeared = {**base, "seq": 1, "call_state": "Appeared", "timestamp": t0}
    connected = {**base, "seq": 2, "call_state": "Connected", "timestamp": t0 + 3}
    gone = {
        **base,
        "seq": 4,
        "call_state": "Disconnected",
        "timestamp": t0 + 9,
        "disconnect_reason": 1110,
    }
    dtmf = {"entry_id": "E1", "call_id": "L2", "seq": 3, "dtmf": "2", "timestamp": t0 + 6}

    with eager(execute=True):
        for url, payload in (
            ("/hooks/mango/events/call", gone),
            ("/hooks/mango/events/dtmf", dtmf),
            ("/hooks/mango/events/call", connected),
            ("/hooks/mango/events/dtmf", dtmf),
            ("/hooks/mango/events/call", appeared),
        ):
            assert client.post(url, mango.webhook(payload)).status_code == 200

    message.refresh_from_db()
    assert (message.status, message.dtmf) == (MessageStatus.ANSWERED, "2")
    assert Consent.objects.get(client=person, channel=Channel.CALL).is_granted is False
    assert ConsentEvent.objects.filter(client=person, source="ivr").count() == 1
    assert NumberBlock.objects.filter(phone=person.phone.as_e164).exists()
    assert Message.objects.count() == 1  # an answered call is not retried


def test_mango_forged_event_is_refused(mango: MangoFake, client: HttpClient) -> None:
    form = mango.webhook({"entry_id": "E9", "call_state": "Appeared"})
    form["sign"] = "0" * 64

    assert client.post("/hooks/mango/events/call", form).status_code == 403
    assert not GatewayEvent.objects.exists()


def test_mango_incoming_call_pops_up(mango: MangoFake, client: HttpClient, eager: Any) -> None:
    caller = ClientFactory(phone="+79161234567")
    since = timezone.now() - dt.timedelta(minutes=1)
    payload = {
        "entry_id": "E5",
        "call_id": "L1",
        "seq": 1,
        "call_state": "Appeared",
        "timestamp": int(timezone.now().timestamp()),
        "from": {"number": "79161234567"},
        "to": {"extension": "102"},
    }

    with eager(execute=True):
        client.post("/hooks/mango/events/call", mango.webhook(payload))

    (call,) = incoming_calls_for_extension("102", since)
    assert (call.client_id, call.from_number) == (caller.pk, "79161234567")


def test_mango_refused_command_fails_the_message(
    mango: MangoFake, client: HttpClient, eager: Any, make_call: Any
) -> None:
    message = sent(make_call, ClientFactory(), "")

    with eager(execute=True):
        client.post(
            "/hooks/mango/result/callback",
            mango.webhook({"command_id": f"lichno-msg-{message.pk}", "result": 3103}),
        )

    message.refresh_from_db()
    assert message.status == MessageStatus.FAILED
