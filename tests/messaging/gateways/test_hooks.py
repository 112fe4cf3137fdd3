"""Webhook security (secret, IP allow-list) and the Kannel DLR / MO endpoints."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.test import RequestFactory

from crm.models import Channel, Consent
from messaging.hooks.security import constant_time_equals, ip_allowed, verify_hook
from messaging.models import GatewayEvent, Message, MessageStatus
from messaging.models import InboundSms as InboundSmsRow
from messaging.tasks.gateways import APPLY_PENDING_KEY
from tests.messaging.gateways.conftest import sms_messages

SECRET = "s3cret"


@pytest.fixture
def hooks(settings: Any) -> None:
    settings.HOOKS_KANNEL_SECRET = SECRET
    settings.HOOKS_KANNEL_ALLOWED_IPS = ["127.0.0.1", "10.0.0.0/8"]
    settings.DEBUG = False


def test_constant_time_equals() -> None:
    assert constant_time_equals("abc", "abc") and constant_time_equals(b"abc", "abc")
    assert not constant_time_equals("abc", "abd") and not constant_time_equals("abc", "")


@pytest.mark.parametrize(
    ("address", "allowed", "ok"),
    [
        ("127.0.0.1", ["127.0.0.1"], True),
        ("10.1.2.3", ["10.0.0.0/8"], True),
        ("192.168.1.5", ["127.0.0.1", "10.0.0.0/8"], False),
        ("::1", ["::1"], True),
        ("garbage", ["127.0.0.1"], False),
        ("192.168.1.5", [], True),
    ],
)
def test_ip_allow_list(address: str, allowed: list[str], ok: bool) -> None:
    assert ip_allowed(address, allowed) is ok


@pytest.mark.usefixtures("hooks")
@pytest.mark.parametrize(
    ("address", "token", "allowed"),
    [
        ("127.0.0.1", SECRET, True),
        ("127.0.0.1", "wrong", False),
        ("127.0.0.1", "", False),
        ("8.8.8.8", SECRET, False),
    ],
)
def test_verify_hook(address: str, token: str, allowed: bool) -> None:
    request = RequestFactory().get("/hooks/kannel/dlr", {"token": token}, REMOTE_ADDR=address)
    if allowed:
        verify_hook(request, "kannel")
    else:
        with pytest.raises(PermissionDenied):
            verify_hook(request, "kannel")


def test_a_missing_secret_refuses_unless_debug(settings: Any) -> None:
    settings.HOOKS_KANNEL_SECRET = ""
    settings.DEBUG = False
    request = RequestFactory().get("/hooks/kannel/dlr", REMOTE_ADDR="127.0.0.1")
    with pytest.raises(PermissionDenied):
        verify_hook(request, "kannel")
    settings.DEBUG = True
    verify_hook(request, "kannel")


def test_header_token_is_accepted(hooks: None) -> None:
    request = RequestFactory().get(
        "/hooks/kannel/dlr", REMOTE_ADDR="127.0.0.1", HTTP_X_LICHNO_TOKEN=SECRET
    )
    verify_hook(request, "kannel")


@pytest.fixture
def eager_tasks() -> Iterator[None]:
    from crm.celery import app

    app.conf.task_always_eager = True
    cache.delete(APPLY_PENDING_KEY)
    try:
        yield
    finally:
        app.conf.task_always_eager = False


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("hooks", "eager_tasks")
def test_kannel_dlr_hook_stores_hands_over_and_ignores_replays(client: Any) -> None:
    (message,) = sms_messages(1, text=lambda i: "x", phone=lambda i: "+79162223344")
    Message.objects.filter(pk=message.pk).update(status=MessageStatus.SENT)
    url = f"/hooks/kannel/dlr?id={message.pk}&token={SECRET}&type=1&ts=1795338839&reply="
    assert client.get(url).status_code == 200
    assert client.get(url).status_code == 200  # smsbox retried
    # The apply task (run inline here) moved the message; the replay was stored once
    assert Message.objects.get(pk=message.pk).status == MessageStatus.DELIVERED
    event = GatewayEvent.objects.get()
    assert (event.message_id, event.sequence, event.processed_at is not None) == (
        message.pk,
        "1",
        True,
    )


@pytest.mark.django_db
@pytest.mark.usefixtures("hooks")
def test_kannel_dlr_hook_refuses_bad_token_and_bad_input(client: Any) -> None:
    assert client.get("/hooks/kannel/dlr?id=1&type=1&token=nope").status_code == 403
    assert client.get(f"/hooks/kannel/dlr?id=x&type=1&token={SECRET}").status_code == 400
    assert client.get(f"/hooks/kannel/dlr?id=1&type=3&token={SECRET}").status_code == 400
    assert not GatewayEvent.objects.exists()


@pytest.mark.django_db
@pytest.mark.usefixtures("hooks")
def test_kannel_mo_hook_utf8_and_ucs2(client: Any) -> None:
    (message,) = sms_messages(1, text=lambda i: "x", phone=lambda i: "+79163334455")
    utf8 = quote("Стоп".encode())
    ucs2 = quote("Когда откроетесь?".encode("utf-16-be"))
    base = f"/hooks/kannel/mo?from=%2B79163334455&to=1234&token={SECRET}"
    r1 = client.get(f"{base}&id=a1&text={utf8}&coding=0&charset=UTF-8&ts=1795338839")
    r2 = client.get(f"{base}&id=a2&text={ucs2}&coding=2&charset=UTF-16BE&ts=1795338839")
    assert (r1.status_code, r1.content, r2.status_code) == (200, b"", 200)
    texts = set(InboundSmsRow.objects.values_list("text", flat=True))
    assert texts == {"Стоп", "Когда откроетесь?"}
    assert not Consent.objects.get(client_id=message.client_id, channel=Channel.SMS).is_granted


@pytest.mark.django_db(transaction=True)  # scheduled after commit: outside a test transaction
def test_apply_soon_needs_no_cache_shared_with_the_worker(monkeypatch: Any) -> None:
    """One apply task per window per web process, and the next one after it, although the task
    (in a worker process with a cache of its own) never clears this process's mark."""
    import time

    from messaging.tasks import gateways

    scheduled: list[float] = []
    monkeypatch.setattr(
        gateways.gateway_events_apply_pending_task,
        "apply_async",
        lambda countdown: scheduled.append(countdown),
    )
    cache.delete(APPLY_PENDING_KEY)
    for _ in range(5):  # a burst of callbacks in one window
        gateways.gateway_events_apply_soon(delay=1)
    assert scheduled == [1]
    # The task runs after the mark expired: a report stored by then schedules the next run
    time.sleep(1.05)
    gateways.gateway_events_apply_soon(delay=1)
    assert scheduled == [1, 1]
