"""SMS through Kannel's smsbox HTTP ``sendsms`` interface.

``sendsms`` answers "0: Accepted for delivery" and returns no id of its own, so every request
carries a ``dlr-url`` with **our** Message id and the hook's secret; Kannel calls it back with the
report type (``%d``) for each state asked by ``dlr-mask`` (31: all of them). Cyrillic goes out as
``coding=2`` with ``charset=UTF-8``; smsbox concatenates long texts (its sendsms-user needs
``max-messages`` > 1 and ``concatenation = true``, which :mod:`messaging.peers.kannel` writes).

Options (``SMS_BACKEND_OPTIONS``, falling back to the ``KANNEL_*`` settings): ``url``,
``username``, ``password``, ``sender``, ``dlr_url``, ``dlr_mask``, ``timeout``, ``concurrency``
(parallel keep-alive connections), ``rate_limit``.
"""

from __future__ import annotations

import http.client
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlencode, urlsplit

from django.conf import settings

from messaging.backends.base import (
    BaseBackend,
    OutgoingMessage,
    PermanentGatewayError,
    SendResult,
    SendStatus,
)
from messaging.backends.smsparts import is_gsm7
from messaging.hooks.security import hook_secret

DLR_ESCAPES = "type=%d&ts=%T&reply=%A&smsc=%i"


class KannelBackend(BaseBackend):
    def __init__(
        self,
        *,
        url: str | None = None,
        username: str | None = None,
        password: str | None = None,
        sender: str | None = None,
        dlr_url: str | None = None,
        dlr_mask: int = 31,
        timeout: float | None = None,
        concurrency: int = 8,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.url = url or settings.KANNEL_SENDSMS_URL
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PermanentGatewayError(f"KANNEL_SENDSMS_URL is not an http(s) URL: {self.url!r}")
        self._scheme, self._host, self._port = parts.scheme, parts.hostname, parts.port
        self._path = parts.path or "/cgi-bin/sendsms"
        self.username = username if username is not None else settings.KANNEL_USERNAME
        self.password = password if password is not None else settings.KANNEL_PASSWORD
        self.sender = sender if sender is not None else settings.KANNEL_FROM
        self.dlr_url = dlr_url or settings.KANNEL_DLR_URL
        self.dlr_mask = dlr_mask
        self.timeout = timeout if timeout is not None else settings.KANNEL_TIMEOUT
        self.concurrency = max(1, concurrency)
        self._local = threading.local()
        self._pool: ThreadPoolExecutor | None = None
        self._connections: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._sent_ids: list[int] = []

    # Connections ---------------------------------------------------------------------------

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = (
                http.client.HTTPSConnection
                if self._scheme == "https"
                else http.client.HTTPConnection
            )
            conn = cls(self._host, self._port, timeout=self.timeout)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def open(self) -> None:
        if self._pool is None and self.concurrency > 1:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="kannel")

    def close(self) -> None:
        self._shutdown()
        self._apply_waiting()

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    # Sending -------------------------------------------------------------------------------

    def dlr_url_for(self, message: OutgoingMessage) -> str:
        ours = urlencode({"id": message.id, "token": hook_secret("kannel")})
        joiner = "&" if "?" in self.dlr_url else "?"
        return f"{self.dlr_url}{joiner}{ours}&{DLR_ESCAPES}"

    def query_for(self, message: OutgoingMessage) -> str:
        params = {
            "username": self.username,
            "password": self.password,
            "from": message.metadata.get("sender") or self.sender,
            "to": "+" + re.sub(r"\D", "", message.to) if message.to.startswith("+") else message.to,
            "text": message.text,
            "charset": "UTF-8",
            "coding": "0" if is_gsm7(message.text) else "2",
            "dlr-mask": str(self.dlr_mask),
            "dlr-url": self.dlr_url_for(message),
        }
        return urlencode(params)

    def _send_one(self, message: OutgoingMessage) -> SendResult:
        target = f"{self._path}?{self.query_for(message)}"
        for attempt in range(2):  # a keep-alive connection the server closed: reconnect once
            conn = self._connection()
            try:
                conn.request("GET", target)
                response = conn.getresponse()
                body = response.read().decode("utf-8", errors="replace").strip()
            except (http.client.HTTPException, OSError) as exc:
                self._drop_connection()
                if attempt == 0 and not isinstance(exc, TimeoutError):
                    continue
                return SendResult(message.id, SendStatus.RETRY, error=f"kannel: {exc}"[:500])
            if response.will_close:
                self._drop_connection()
            return self._result(message, response.status, body)
        raise AssertionError("unreachable")

    def _result(self, message: OutgoingMessage, status: int, body: str) -> SendResult:
        # 202 "0: Accepted for delivery" or "3: Queued for later delivery" (SMSC down: Kannel
        # keeps it and still reports through the dlr-url).
        if status in (200, 202) and body[:1] in ("0", "3"):
            return SendResult(message.id, SendStatus.SENT, provider_id=f"kannel-{message.id}")
        error = f"kannel {status}: {body}"[:500]
        if status == 403 and "uthorization" in body:
            # Wrong sendsms-user: every message would fail the same way.
            raise PermanentGatewayError(error)
        if status >= 500 or status in (408, 429):
            return SendResult(message.id, SendStatus.RETRY, error=error, retry_after=5.0)
        return SendResult(message.id, SendStatus.FAILED, error=error)

    def send_messages(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        if not messages:
            return []
        own_pool = self._pool is None and self.concurrency > 1 and len(messages) > 1
        if own_pool:
            self.open()
        try:
            if self._pool is None:
                results = [self._send_one(m) for m in messages]
            else:
                results = list(self._pool.map(self._send_one, messages))
        finally:
            if own_pool:
                self._shutdown()
        self._sent_ids.extend(r.message_id for r in results if r.status == SendStatus.SENT)
        return results

    def after_send(self) -> None:
        # Reports the webhook stored before dispatch marked their Messages sent: apply them now.
        self._apply_waiting()

    def _apply_waiting(self) -> None:
        from messaging.services.events import delivery_reports_apply

        sent, self._sent_ids = self._sent_ids, []
        for start in range(0, len(sent), 2000):
            delivery_reports_apply(message_ids=sent[start : start + 2000], limit=10_000)
