"""Kannel smsbox callbacks: delivery reports (``dlr-url``) and inbound SMS (``sms-service``).

The URLs Kannel calls are built by :mod:`messaging.backends.kannel` (DLR) and
:mod:`messaging.peers.kannel` (MO) with Kannel's escapes::

    /hooks/kannel/dlr?id=<our Message id>&type=%d&ts=%T&reply=%A&token=<secret>
    /hooks/kannel/mo?id=%I&from=%p&to=%P&text=%a&coding=%c&charset=%C&ts=%T&token=<secret>

Both store the event once under its unique key (a replay by ``http-request-retry`` is harmless)
and answer at once with an empty body (smsbox would send a non-empty MO answer back to the client
as an SMS). DLRs arriving together are stored together (:mod:`messaging.hooks.batching`: one
INSERT for the reports of all requests waiting meanwhile, each answered once its report is
committed) and applied by a task that batches every report stored in the meantime; an MO is
handled inline (rare, and a STOP must take effect at once).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.urls import URLPattern, path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from messaging.events import KANNEL_DLR_STATES, DeliveryReport, DeliveryState, InboundSms
from messaging.hooks.batching import coalescer
from messaging.hooks.security import verify_hook
from messaging.services.events import inbound_sms_receive
from messaging.tasks.gateways import gateway_events_apply_soon

logger = logging.getLogger(__name__)

PROVIDER = "kannel"


def _params(request: HttpRequest) -> dict[str, str]:
    """Query (and form) parameters with their raw bytes kept as latin-1 characters.

    Kannel URL-encodes a UCS-2 text's bytes as they are; Django would decode them as UTF-8 and
    lose them, so decoding waits until the charset (``%C``) is known.
    """
    params = dict(parse_qsl(request.META.get("QUERY_STRING", ""), encoding="latin-1"))
    if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
        params.update(parse_qsl(request.body.decode("latin-1"), encoding="latin-1"))
    return params


def _text(raw: str, charset: str, coding: str) -> str:
    data = raw.encode("latin-1")
    charset = charset.upper()
    if charset in {"UTF-16BE", "UCS-2", "UCS-2BE", "UTF-16"} or (coding == "2" and not charset):
        return data.decode("utf-16-be", errors="replace")
    try:
        return data.decode(charset or "utf-8")
    except (LookupError, UnicodeDecodeError):
        return data.decode("utf-8", errors="replace")


def _timestamp(raw: str) -> datetime:
    try:
        return datetime.fromtimestamp(int(raw), tz=UTC)
    except (TypeError, ValueError, OverflowError):
        return timezone.now()


@csrf_exempt
@require_http_methods(["GET", "POST"])
def dlr(request: HttpRequest) -> HttpResponse:
    verify_hook(request, PROVIDER)
    params = _params(request)
    try:
        message_id = int(params["id"])
        state = KANNEL_DLR_STATES[int(params["type"])]
    except (KeyError, ValueError):
        return HttpResponseBadRequest("id and type (1, 2, 4, 8, 16) are required")
    reply = _text(params.get("reply", ""), "utf-8", "")
    report = DeliveryReport(
        provider=PROVIDER,
        external_id=str(message_id),
        message_id=message_id,
        state=state,
        sequence=params["type"],
        occurred_at=_timestamp(params.get("ts", "")),
        error=reply[:200] if state in (DeliveryState.UNDELIVERED, DeliveryState.REJECTED) else "",
        payload={"reply": reply[:500], "smsc": params.get("smsc", "")[:60]},
    )
    if coalescer.record(report):
        gateway_events_apply_soon()
    return HttpResponse(status=200)


@csrf_exempt
@require_http_methods(["GET", "POST"])
def mo(request: HttpRequest) -> HttpResponse:
    verify_hook(request, PROVIDER)
    params = _params(request)
    sender = params.get("from", "").strip()
    external_id = params.get("id", "").strip()
    if not sender or not external_id:
        return HttpResponseBadRequest("from and id are required")
    text = _text(params.get("text", ""), params.get("charset", ""), params.get("coding", ""))
    message = InboundSms(
        provider=PROVIDER,
        external_id=external_id,
        sender=sender,
        recipient=params.get("to", "").strip(),
        text=text,
        occurred_at=_timestamp(params.get("ts", "")),
        payload={"coding": params.get("coding", ""), "charset": params.get("charset", "")},
    )
    inbound_sms_receive(messages=[message])
    return HttpResponse(status=200)


urlpatterns: list[URLPattern] = [
    path("dlr", dlr, name="hooks-kannel-dlr"),
    path("mo", mo, name="hooks-kannel-mo"),
]
