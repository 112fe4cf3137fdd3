"""Mango Office virtual PBX (VPBX API): commands/callback and the events/* webhooks.

From Mango Office's published API documentation:

- Every request and every webhook is a form post with ``vpbx_api_key``, ``sign`` and ``json``,
  where ``sign = sha256_hex(vpbx_api_key + json + vpbx_api_salt)``.
- ``commands/callback`` rings ``from.extension`` first, then ``to_number``; our ``command_id``
  comes back in ``result/callback`` and in the call's ``events/call``. Click-to-call: the
  operator's extension; autodial: the voice-menu extension that plays the offer
  (``autodial_extension``), with ``command_id`` = ``lichno-msg-<Message id>``.
- ``events/call``: ``entry_id`` (the whole conversation), ``call_id`` (one leg), ``seq``,
  ``call_state`` (Appeared, Connected, OnHold, Disconnected), ``from``/``to`` with ``number`` and
  ``extension``, ``disconnect_reason``, ``command_id``. ``events/dtmf``: ``dtmf``, ``seq``,
  ``entry_id``. A result code of 1000 means success.
"""

from __future__ import annotations

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

PROVIDER = "mango"
SUCCESS = 1000
COMMAND_PREFIX = "lichno-msg-"
_STATES = {
    "Appeared": CallState.RINGING,
    "Connected": CallState.ANSWERED,
    "Disconnected": CallState.ENDED,
}


def sign(api_key: str, body: str, salt: str) -> str:
    return hashlib.sha256(f"{api_key}{body}{salt}".encode()).hexdigest()


def message_id_of(command_id: str) -> int | None:
    if command_id.startswith(COMMAND_PREFIX) and command_id[len(COMMAND_PREFIX) :].isdigit():
        return int(command_id[len(COMMAND_PREFIX) :])
    return None


class MangoBackend(VoiceBackend):
    """Options: ``api_key``, ``api_salt``, ``base_url``, ``line_number`` (caller id shown),
    ``autodial_extension`` (voice menu for autodial), ``busy_reasons`` (disconnect reasons that
    mean busy), ``timeout`` seconds."""

    provider = PROVIDER

    def __init__(
        self,
        *,
        api_key: str = "",
        api_salt: str = "",
        base_url: str = "https://app.mango-office.ru/vpbx/",
        line_number: str = "",
        autodial_extension: str = "",
        busy_reasons: Sequence[str] = (),
        timeout: float = 10.0,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if not api_key or not api_salt:
            raise PermanentGatewayError("Mango Office needs vpbx_api_key and its salt")
        self.api_key = api_key
        self.api_salt = api_salt
        self.base_url = base_url.rstrip("/") + "/"
        self.line_number = line_number
        self.autodial_extension = autodial_extension
        self.busy_reasons = {str(r) for r in busy_reasons}
        self.timeout = timeout

    # API ------------------------------------------------------------------------------------

    def form(self, payload: Mapping[str, Any]) -> dict[str, str]:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        return {
            "vpbx_api_key": self.api_key,
            "sign": sign(self.api_key, body, self.api_salt),
            "json": body,
        }

    def command(self, path: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        data = urllib.parse.urlencode(self.form(payload)).encode()
        request = urllib.request.Request(
            self.base_url + path,
            data=data,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace")
            if exc.code == 429 or exc.code >= 500:
                raise RetryableGatewayError(f"Mango {exc.code}: {detail}") from exc
            raise PermanentGatewayError(f"Mango {exc.code}: {detail}") from exc
        except (OSError, ValueError) as exc:
            raise RetryableGatewayError(f"Mango: {exc}") from exc
        if int(body.get("result", 0)) != SUCCESS:
            raise PermanentGatewayError(f"Mango: result {body.get('result')}")
        return dict(body)

    def callback(self, *, extension: str, number: str, command_id: str) -> None:
        payload: dict[str, Any] = {
            "command_id": command_id,
            "from": {"extension": extension},
            "to_number": phone_digits(number),
        }
        if self.line_number:
            payload["line_number"] = self.line_number
        self.command("commands/callback", payload)

    def originate(self, *, extension: str, number: str, reference: str = "") -> str:
        command_id = reference or f"lichno-c2c-{datetime.now(UTC):%Y%m%d%H%M%S%f}"
        self.callback(extension=extension, number=number, command_id=command_id)
        return command_id

    def send_messages(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        if not self.autodial_extension:
            raise PermanentGatewayError("Mango autodial needs autodial_extension (the voice menu)")
        results = []
        for message in messages:
            command_id = f"{COMMAND_PREFIX}{message.id}"
            try:
                self.callback(
                    extension=self.autodial_extension, number=message.to, command_id=command_id
                )
            except RetryableGatewayError as exc:
                results.append(SendResult(message.id, SendStatus.RETRY, error=str(exc)[:500]))
            except PermanentGatewayError as exc:
                results.append(SendResult(message.id, SendStatus.FAILED, error=str(exc)[:500]))
            else:
                results.append(SendResult(message.id, SendStatus.SENT, provider_id=command_id))
        return results

    # Webhooks -------------------------------------------------------------------------------

    def verify_webhook(self, fields: Mapping[str, str]) -> bool:
        key, signature, body = (
            fields.get("vpbx_api_key", ""),
            fields.get("sign", ""),
            fields.get("json", ""),
        )
        return hmac.compare_digest(key, self.api_key) and hmac.compare_digest(
            sign(key, body, self.api_salt), signature
        )

    def parse_call(self, data: Mapping[str, Any]) -> list[CallEvent]:
        """``events/call`` -> one event; OnHold and the operator's leg of a callback -> none."""
        state = _STATES.get(str(data.get("call_state", "")))
        entry_id = str(data.get("entry_id") or data.get("call_id") or "")
        if state is None or not entry_id:
            return []
        src, dst = data.get("from") or {}, data.get("to") or {}
        command_id = str(data.get("command_id") or "")
        message_id = message_id_of(command_id)
        if command_id and (dst.get("extension") or not dst.get("number")):
            return []  # a callback's first leg rings our own extension: not the client's call
        if src.get("extension") or command_id:
            direction = CallDirection.OUTBOUND
            extension = str(src.get("extension") or "")
        else:
            direction = CallDirection.INBOUND
            extension = str(dst.get("extension") or "")
        reason = str(data.get("disconnect_reason") or "")
        disposition = ""
        if state == CallState.ENDED:
            disposition = "busy" if reason in self.busy_reasons else "no_answer"
        seq = int(data.get("seq") or 0)
        return [
            CallEvent(
                provider=PROVIDER,
                call_id=entry_id,
                state=state,
                direction=direction,
                occurred_at=_timestamp(data.get("timestamp")),
                from_number=str(src.get("number") or ""),
                to_number=str(dst.get("number") or ""),
                extension=extension,
                disposition=disposition,
                sequence=f"{seq:06d}-{data.get('call_state')}-{data.get('call_id', '')}"[:60],
                message_id=message_id,
                payload={
                    "disconnect_reason": reason,
                    "command_id": command_id,
                    "autodial": message_id is not None,
                },
            )
        ]

    def parse_dtmf(self, data: Mapping[str, Any]) -> list[CallEvent]:
        entry_id = str(data.get("entry_id") or data.get("call_id") or "")
        digits = str(data.get("dtmf") or "")
        if not entry_id or not digits:
            return []
        seq = int(data.get("seq") or 0)
        return [
            CallEvent(
                provider=PROVIDER,
                call_id=entry_id,
                state=CallState.DTMF,
                direction=CallDirection.OUTBOUND,
                occurred_at=_timestamp(data.get("timestamp")),
                to_number=str(data.get("to_number") or ""),
                digits=digits[:20],
                sequence=f"{seq:06d}-dtmf-{data.get('call_id', '')}"[:60],
            )
        ]

    def parse_callback_result(self, data: Mapping[str, Any]) -> list[CallEvent]:
        """A refused autodial command ends its message as failed; success waits for events."""
        command_id = str(data.get("command_id") or "")
        message_id = message_id_of(command_id)
        result = int(data.get("result") or 0)
        if message_id is None or result == SUCCESS:
            return []
        return [
            CallEvent(
                provider=PROVIDER,
                call_id=command_id,
                state=CallState.ENDED,
                direction=CallDirection.OUTBOUND,
                occurred_at=datetime.now(UTC),
                disposition="failed",
                sequence=f"result-{result}",
                message_id=message_id,
                payload={"result": result},
            )
        ]


def _timestamp(raw: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(raw), UTC)
    except (TypeError, ValueError, OverflowError):
        return datetime.now(UTC)
