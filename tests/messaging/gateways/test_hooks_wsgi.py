"""The production WSGI entry point (``crm.wsgi.application``) sends ``/hooks/`` to the webhooks'
own handler, without the site's middleware, and everything else through it."""

from __future__ import annotations

import io
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest

from messaging.models import GatewayEvent, Message, MessageStatus
from tests.messaging.gateways.conftest import sms_messages

SECRET = "wsgi-secret"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def hooks(settings: Any) -> None:
    settings.HOOKS_KANNEL_SECRET = SECRET
    settings.HOOKS_KANNEL_ALLOWED_IPS = ["127.0.0.1"]
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    settings.DEBUG = False


def _call(path: str, query: str = "") -> tuple[int, dict[str, str], bytes]:
    from crm.wsgi import application

    environ: dict[str, Any] = {
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1",
        "wsgi.input": io.BytesIO(b""),
    }
    setup_testing_defaults(environ)
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        answer["status"], answer["headers"] = int(status.split()[0]), dict(headers)

    body = b"".join(application(environ, start_response))
    return answer["status"], answer["headers"], body


@pytest.mark.usefixtures("hooks")
def test_a_delivery_report_is_stored_without_the_site_middleware() -> None:
    (message,) = sms_messages(1, text=lambda i: "x", phone=lambda i: "+79165550001")
    Message.objects.filter(pk=message.pk).update(status=MessageStatus.SENT)

    status, headers, body = _call(
        "/hooks/kannel/dlr", f"id={message.pk}&token={SECRET}&type=1&ts=1795338839&reply=ok"
    )

    assert (status, body) == (200, b"")
    event = GatewayEvent.objects.get()
    assert (event.message_id, event.sequence) == (message.pk, "1")
    # XFrameOptionsMiddleware, LocaleMiddleware and SessionMiddleware left no trace
    assert "X-Frame-Options" not in headers and "Set-Cookie" not in headers
    assert "Accept-Language" not in headers.get("Vary", "")


@pytest.mark.usefixtures("hooks")
def test_hook_errors_are_still_answers() -> None:
    assert _call("/hooks/kannel/dlr", "id=1&type=1&token=wrong")[0] == 403
    assert _call("/hooks/kannel/dlr", f"id=x&type=1&token={SECRET}")[0] == 400
    assert _call("/hooks/kannel/nothing-here", f"token={SECRET}")[0] == 404
    assert not GatewayEvent.objects.exists()


@pytest.mark.usefixtures("hooks")
def test_the_site_keeps_its_middleware() -> None:
    status, headers, _ = _call("/admin/login/")
    assert status == 200
    assert headers["X-Frame-Options"] == "DENY"
    assert "Accept-Language" in headers.get("Vary", "") or "Content-Language" in headers
