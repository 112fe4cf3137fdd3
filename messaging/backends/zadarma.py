"""Zadarma cloud PBX (HTTP API v1): callback requests and NOTIFY_* webhooks.

From Zadarma's published API documentation and its reference client (zadarma/user-api-v1):

- Requests carry ``Authorization: <key>:<signature>`` where the signature is
  ``base64(hex(HMAC-SHA1(secret, method_path + query + md5(query))))`` over the parameters
  sorted by name and URL-encoded (RFC 1738, spaces as "+").
- ``GET /v1/request/callback/?from=&to=[&predicted]`` rings ``from`` first, then connects ``to``.
  Click-to-call: ``from`` is the operator's extension. Autodial: ``from`` is the client and ``to``
  the PBX voice menu (``autodial_to``) that plays the offer and reports digits (NOTIFY_IVR).
- Webhooks are form posts with an ``event`` field, signed in a ``Signature`` header:
  ``base64(hex(HMAC-SHA1(secret, fields)))`` where the fields depend on the event (below).
  ``?zd_echo=X`` must answer ``X`` when the URL is registered.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from messaging.backends.base import (
    OutgoingMessage,
    PermanentGatewayError,
    RetryableGatewayError,
    SendResult,
    SendStatus,
)
from messaging.backends.voice import VoiceBackend, phone_digits
from messaging.events import CallEvent
from messaging.models import CallDirection, CallState

PROVIDER = "zadarma"
CALLBACK_METHOD = "/v1/request/callback/"

# The fields each webhook signs, concatenated in this order.
SIGNED_FIELDS = {
    "NOTIFY_START": ("caller_id", "called_did", "call_start"),
    "NOTIFY_INTERNAL": ("caller_id", "called_did", "call_start"),
    "NOTIFY_IVR": ("caller_id", "called_did", "call_start"),
    "NOTIFY_END": ("caller_id", "called_did", "call_start"),
    "NOTIFY_ANSWER": ("caller_id", "destination", "call_start"),
    "NOTIFY_OUT_START": ("internal", "destination", "call_start"),
    "NOTIFY_OUT_END": ("internal", "destination", "call_start"),
}
_DISPOSITIONS = {
    "answered": "answered",
    "busy": "busy",
    "no answer": "no_answer",
    "cancel": "no_answer",
}


def _b64_hmac_sha1_hex(secret: str, text: str) -> str:
    digest = hmac.new(secret.encode(), text.encode(), hashlib.sha1).hexdigest()
    return base64.b64encode(digest.encode()).decode()


def query_string(params: Mapping[str, str]) -> str:
    return urllib.parse.urlencode(sorted(params.items()))


def request_signature(secret: str, method: str, params: Mapping[str, str]) -> str:
    query = query_string(params)
    return _b64_hmac_sha1_hex(secret, method + query + hashlib.md5(query.encode()).hexdigest())


def webhook_signature(secret: str, fields: Mapping[str, str]) -> str | None:
    names = SIGNED_FIELDS.get(fields.get("event", ""))
    if names is None:
        return None
    return _b64_hmac_sha1_hex(secret, "".join(str(fields.get(n, "")) for n in names))


class ZadarmaBackend(VoiceBackend):
    """Options: ``key``, ``secret``, ``base_url``; autodial: ``autodial_to`` (the voice menu or
    scenario the client is connected to), ``predicted``; ``timeout`` seconds."""

    provider = PROVIDER

    def __init__(
        self,
        *,
        key: str = "",
        secret: str = "",
        base_url: str = "https://api.zadarma.com",
        autodial_to: str = "",
        predicted: bool = False,
        timeout: float = 10.0,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if not key or not secret:
            raise PermanentGatewayError("Zadarma needs its API key and secret")
        self.key = key
        self.secret = secret
        self.base_url = base_url.rstrip("/")
        self.autodial_to = autodial_to
        self.predicted = predicted
        self.timeout = timeout

    # API ------------------------------------------------------------------------------------

    def request(self, method: str, params: Mapping[str, str]) -> dict[str, Any]:
        params = {**params, "format": "json"}
        url = f"{self.base_url}{method}?{query_string(params)}"
        signature = request_signature(self.secret, method, params)
        request = urllib.request.Request(url, headers={"Authorization": f"{self.key}:{signature}"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace")
            if exc.code in (429,) or exc.code >= 500:
                raise RetryableGatewayError(f"Zadarma {exc.code}: {detail}") from exc
            raise PermanentGatewayError(f"Zadarma {exc.code}: {detail}") from exc
        except (OSError, ValueError) as exc:
            raise RetryableGatewayError(f"Zadarma: {exc}") from exc
        if body.get("status") != "success":
            raise PermanentGatewayError(f"Zadarma: {body.get('message') or body}")
        return dict(body)

    def callback(self, *, from_: str, to: str) -> dict[str, Any]:
        params = {"from": from_, "to": to}
        if self.predicted:
            params["predicted"] = "predicted"
        return self.request(CALLBACK_METHOD, params)

    def originate(self, *, extension: str, number: str, reference: str = "") -> str:
        body = self.callback(from_=extension, to=phone_digits(number))
        return f"{body.get('from', extension)}>{body.get('to', number)}@{body.get('time', '')}"

    def send_messages(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        if not self.autodial_to:
            raise PermanentGatewayError("Zadarma autodial needs autodial_to (the voice menu)")
        results = []
        for message in messages:
            try:
                self.callback(from_=phone_digits(message.to), to=self.autodial_to)
            except RetryableGatewayError as exc:
                results.append(SendResult(message.id, SendStatus.RETRY, error=str(exc)[:500]))
            except PermanentGatewayError as exc:
                results.append(SendResult(message.id, SendStatus.FAILED, error=str(exc)[:500]))
            else:
                results.append(
                    SendResult(message.id, SendStatus.SENT, provider_id=f"zadarma-{message.id}")
                )
        return results

    # Webhooks -------------------------------------------------------------------------------

    def verify_webhook(self, fields: Mapping[str, str], signature: str) -> bool:
        expected = webhook_signature(self.secret, fields)
        return expected is not None and hmac.compare_digest(expected, signature or "")

    def parse_webhook(self, fields: Mapping[str, str]) -> list[CallEvent]:
        """A NOTIFY_* form as call events (none for events we do not use)."""
        event = fields.get("event", "")
        call_id = fields.get("pbx_call_id", "")
        if event not in SIGNED_FIELDS or not call_id:
            return []
        now = datetime.now(UTC)
        payload: dict[str, Any] = {"event": event, "call_start": fields.get("call_start", "")}
        common: dict[str, Any] = {
            "provider": PROVIDER,
            "call_id": call_id,
            "occurred_at": now,
            "extension": fields.get("internal", ""),
        }
        if event in ("NOTIFY_OUT_START", "NOTIFY_OUT_END") or (
            event == "NOTIFY_ANSWER" and fields.get("destination") and not fields.get("called_did")
        ):
            direction = CallDirection.OUTBOUND
            common.update(to_number=fields.get("destination", ""))
        else:
            direction = CallDirection.INBOUND
            common.update(
                from_number=fields.get("caller_id", ""),
                to_number=fields.get("called_did", "") or fields.get("destination", ""),
            )
        # Our autodial: the PBX rang the client first, then put them through to the voice menu.
        autodial = bool(self.autodial_to) and fields.get("called_did", "") == self.autodial_to
        if autodial:
            direction = CallDirection.OUTBOUND
            common.update(from_number="", to_number=fields.get("caller_id", ""))
        payload["autodial"] = autodial or (
            direction == CallDirection.OUTBOUND and not fields.get("internal")
        )
        if event in ("NOTIFY_START", "NOTIFY_OUT_START"):
            state, sequence = CallState.RINGING, "1-start"
        elif event == "NOTIFY_INTERNAL":
            state, sequence = CallState.RINGING, f"1-internal-{fields.get('internal', '')}"
        elif event == "NOTIFY_ANSWER":
            state, sequence = CallState.ANSWERED, "2-answer"
        elif event == "NOTIFY_IVR":
            digits = fields.get("wait_dtmf[digits]") or _nested(fields, "wait_dtmf", "digits")
            if not digits:
                return []
            name = fields.get("wait_dtmf[name]") or _nested(fields, "wait_dtmf", "name")
            return [
                CallEvent(
                    state=CallState.DTMF,
                    direction=direction,
                    digits=digits[:20],
                    sequence=f"3-ivr-{name}-{digits}"[:60],
                    payload=payload,
                    **common,
                )
            ]
        else:  # NOTIFY_END, NOTIFY_OUT_END
            raw = fields.get("disposition", "")
            return [
                CallEvent(
                    state=CallState.ENDED,
                    direction=direction,
                    disposition=_DISPOSITIONS.get(raw, "failed"),
                    duration=int(fields.get("duration") or 0),
                    sequence="4-end",
                    payload={
                        **payload,
                        "disposition": raw,
                        "status_code": fields.get("status_code", ""),
                    },
                    **common,
                )
            ]
        return [
            CallEvent(
                state=state, direction=direction, sequence=sequence, payload=payload, **common
            )
        ]


def _nested(fields: Mapping[str, str], name: str, key: str) -> str:
    """``wait_dtmf`` sent as a JSON object rather than PHP-style ``wait_dtmf[digits]``."""
    raw = fields.get(name, "")
    if not raw:
        return ""
    try:
        return str(json.loads(raw).get(key, ""))
    except (ValueError, AttributeError):
        return ""
