"""Cloud PBX webhooks: ``/hooks/zadarma/``, ``/hooks/mango/events/…`` and ``…/result/callback``.

Each checks the provider's IP allow-list and signature, stores the events once (replays hit the
unique key and change nothing) and hands the applying to a task after the commit, so the provider
gets its answer in milliseconds. Nothing here knows the providers' formats: their backends parse.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.urls import URLPattern, path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from messaging.backends.mango import MangoBackend
from messaging.backends.zadarma import ZadarmaBackend
from messaging.events import CallEvent
from messaging.hooks.security import verify_ip
from messaging.services.calls import voice_backend_for
from messaging.services.events import gateway_events_record

logger = logging.getLogger(__name__)


def _hand_off(events: Sequence[CallEvent]) -> None:
    recorded = gateway_events_record(events=events)
    if not recorded:
        return  # a replay: already stored, already (or about to be) applied
    ids = [r.id for r in recorded]

    def enqueue() -> None:
        from messaging.tasks.calls import call_events_process_task

        try:
            call_events_process_task.delay(ids)
        except Exception:  # noqa: BLE001 - the periodic sweep applies them if the broker is down
            logger.exception("could not enqueue call events %s", ids)

    transaction.on_commit(enqueue)


def _backend(provider: str, kind: type) -> object:
    backend = voice_backend_for(provider)
    if not isinstance(backend, kind):
        raise PermissionDenied(f"{provider} is not configured")
    return backend


@csrf_exempt
@require_http_methods(["GET", "POST"])
def zadarma(request: HttpRequest) -> HttpResponse:
    echo = request.GET.get("zd_echo")
    if echo is not None:  # Zadarma checks the URL when it is registered
        return HttpResponse(echo, content_type="text/plain")
    verify_ip(request, "zadarma")
    backend = _backend("zadarma", ZadarmaBackend)
    assert isinstance(backend, ZadarmaBackend)
    fields = {k: str(v) for k, v in request.POST.items()}
    if not backend.verify_webhook(fields, request.headers.get("Signature", "")):
        raise PermissionDenied("bad Zadarma signature")
    _hand_off(backend.parse_webhook(fields))
    return HttpResponse(status=200)


def _mango_view(
    parse: Callable[[MangoBackend, dict[str, Any]], list[CallEvent]],
) -> Callable[..., HttpResponse]:
    @csrf_exempt
    @require_http_methods(["POST"])
    def view(request: HttpRequest) -> HttpResponse:
        verify_ip(request, "mango")
        backend = _backend("mango", MangoBackend)
        assert isinstance(backend, MangoBackend)
        fields = {k: str(v) for k, v in request.POST.items()}
        if not backend.verify_webhook(fields):
            raise PermissionDenied("bad Mango signature")
        try:
            data = json.loads(fields.get("json", ""))
        except ValueError:
            return HttpResponseBadRequest("json is not JSON")
        if not isinstance(data, dict):
            return HttpResponseBadRequest("json is not an object")
        _hand_off(parse(backend, data))
        return HttpResponse(status=200)

    return view


mango_call = _mango_view(MangoBackend.parse_call)
mango_dtmf = _mango_view(MangoBackend.parse_dtmf)
mango_callback_result = _mango_view(MangoBackend.parse_callback_result)


urlpatterns: list[URLPattern] = [
    path("zadarma/", zadarma, name="hooks-zadarma"),
    path("mango/events/call", mango_call, name="hooks-mango-call"),
    path("mango/events/dtmf", mango_dtmf, name="hooks-mango-dtmf"),
    path("mango/result/callback", mango_callback_result, name="hooks-mango-callback-result"),
]
