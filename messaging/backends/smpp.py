"""SMS over a direct SMPP 3.4 session (we are the ESME), on ``smpplib``.

One :class:`SmppSession` binds as transceiver (or receiver, for the listener), keeps a window of
``submit_sm`` awaiting their responses, paces itself to a throughput limit, reconnects with
backoff, answers and sends ``enquire_link`` and unbinds gracefully.

Receipts (``deliver_sm`` with ``esm_class`` 0x04) come back on the same session: those read while
sending are kept in memory, already tied to our Message when this backend submitted the part they
name, and stored and applied as GatewayEvents by :meth:`SmppBackend.after_send` once dispatch has
committed its batch (so they apply at once, outside the send transaction), and at close.
Receipts arriving between campaigns are read by ``manage.py smpp_listener``, which keeps a bound
receiver, and matched to Messages through ``provider_id`` (the id of a message's first part).

Errors: throttling (0x58) and a full SMSC queue (0x14) are retried inside the session with a short
backoff, then reported RETRY; an invalid number or any other refusal fails the message. A message
whose ``submit_sm`` was written but never answered (the link dropped) has an unknown outcome and
is reported FAILED rather than risk a second copy on the client's phone.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.smpp
from django.conf import settings
from django.db import connections
from django.utils import timezone

from messaging.backends.base import (
    BaseBackend,
    OutgoingMessage,
    PermanentGatewayError,
    RetryableGatewayError,
    SendResult,
    SendStatus,
)
from messaging.backends.smsparts import MessageTooLong, sms_decode, sms_split
from messaging.events import (
    SMPP_MESSAGE_STATES,
    SMPP_STAT_STATES,
    DeliveryReport,
    DeliveryState,
    InboundSms,
)

logger = logging.getLogger(__name__)

PROVIDER = "smpp"
ESM_CLASS_RECEIPT = 0x04
ESM_CLASS_UDHI = 0x40
RETRYABLE_STATUSES = {
    0x08: "system error",
    0x14: "message queue full",
    0x58: "throttled",
    0x64: "temporary application error",
}
_STAT = re.compile(rb"stat:(\w+)", re.IGNORECASE)
_ID = re.compile(rb"id:(\S+)", re.IGNORECASE)
_ERR = re.compile(rb"err:(\w+)", re.IGNORECASE)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return "" if value is None else str(value)


def parse_receipt(pdu: Any) -> tuple[str, str, str]:
    """(SMSC message id, stat word, err code) of a receipt, TLVs first, then the text."""
    body = pdu.short_message or b""
    if isinstance(body, str):
        body = body.encode("latin-1")
    receipted = _text(getattr(pdu, "receipted_message_id", None)).strip("\0 ")
    if not receipted and (match := _ID.search(body)):
        receipted = match.group(1).decode("latin-1")
    stat = ""
    if match := _STAT.search(body):
        stat = match.group(1).decode("latin-1").upper()
    state = getattr(pdu, "message_state", None)
    if not stat and state:
        stat = SMPP_MESSAGE_STATES.get(int(state), "UNKNOWN")
    err = match.group(1).decode("latin-1") if (match := _ERR.search(body)) else ""
    return receipted, stat or "UNKNOWN", err


@dataclass
class _Part:
    index: int  # position of its message in the batch
    number: int  # 1-based part number
    params: dict[str, Any]
    attempts: int = 0


@dataclass
class _Outcome:
    parts: int
    ids: dict[int, str] = field(default_factory=dict)  # part number -> SMSC id
    status: SendStatus | None = None
    error: str = ""
    retry_after: float | None = None


class SmppSession:
    """A bound SMPP session; not thread-safe (one per worker)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        system_id: str,
        password: str,
        system_type: str = "",
        bind: str = "transceiver",
        timeout: float = 10.0,
        window: int = 50,
        throughput: float = 0.0,
        reconnect_attempts: int = 4,
        on_receipt: Callable[[DeliveryReport], None] | None = None,
        on_mo: Callable[[InboundSms], None] | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.system_id, self.password, self.system_type = system_id, password, system_type
        self.bind_mode = bind
        self.timeout = timeout
        self.window = max(1, window)
        self.throughput = throughput
        self.reconnect_attempts = reconnect_attempts
        self.on_receipt = on_receipt
        self.on_mo = on_mo
        self.client: smpplib.client.Client | None = None
        self._inflight: dict[int, _Part] = {}
        self._responses: deque[Any] = deque()
        self._next_at = 0.0

    # Binding -------------------------------------------------------------------------------

    @property
    def bound(self) -> bool:
        return self.client is not None

    def connect(self) -> None:
        """Bind, retrying with exponential backoff; raise RetryableGatewayError if it cannot."""
        delay = 0.5
        last: Exception | None = None
        for attempt in range(self.reconnect_attempts):
            try:
                self._bind_once()
                return
            except smpplib.exceptions.PDUError as exc:
                # A refused bind (bad password, 0x0D/0x0E) does not get better by retrying.
                status = exc.args[1] if len(exc.args) > 1 else 0
                if status in (0x0D, 0x0E, 0x0F):
                    raise PermanentGatewayError(f"SMPP bind refused: {exc}") from exc
                last = exc
            except (smpplib.exceptions.ConnectionError, OSError) as exc:
                last = exc
            self._drop()
            if attempt + 1 < self.reconnect_attempts:
                time.sleep(delay * (1 + random.random() / 4))  # noqa: S311 - jitter only
                delay = min(delay * 2, 10.0)
        raise RetryableGatewayError(f"SMPP {self.host}:{self.port} unreachable: {last}")

    def _bind_once(self) -> None:
        client = smpplib.client.Client(
            self.host, self.port, timeout=self.timeout, allow_unknown_opt_params=True
        )
        client.logger.setLevel(logging.WARNING)  # it logs every PDU at INFO/DEBUG
        client.set_message_received_handler(self._on_deliver)
        client.set_message_sent_handler(lambda pdu, **_: self._responses.append(pdu))
        client.set_error_pdu_handler(lambda pdu: None)  # statuses are read in the handler above
        self.client = client  # from here on, _drop() closes it whatever fails
        client.connect()
        binder = {
            "transceiver": client.bind_transceiver,
            "receiver": client.bind_receiver,
            "transmitter": client.bind_transmitter,
        }[self.bind_mode]
        binder(system_id=self.system_id, password=self.password, system_type=self.system_type)

    def _drop(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):  # already broken
                self.client.disconnect()
        self.client = None

    def close(self) -> None:
        """Drain responses, unbind and wait for unbind_resp (bounded), then disconnect."""
        client = self.client
        if client is None:
            return
        try:
            deadline = time.monotonic() + self.timeout
            while self._inflight and time.monotonic() < deadline:
                self.read(block=True)
            client.send_pdu(smpplib.smpp.make_pdu("unbind", client=client))
            deadline = time.monotonic() + min(self.timeout, 5.0)
            while (
                time.monotonic() < deadline
                and client.state != smpplib.consts.SMPP_CLIENT_STATE_OPEN
            ):
                pdu = client.read_pdu()
                if pdu.command == "deliver_sm":
                    client._message_received(pdu)  # a receipt still in flight: keep it
                elif pdu.command == "unbind_resp":
                    break
        except (TimeoutError, smpplib.exceptions.ConnectionError, OSError):
            pass  # some SMSCs close the link instead of answering unbind: unbound all the same
        finally:
            client.state = smpplib.consts.SMPP_CLIENT_STATE_OPEN
            self._drop()

    # Reading -------------------------------------------------------------------------------

    def read(self, *, block: bool, timeout: float | None = None) -> None:
        """Read one PDU (blocking up to the timeout, or ``timeout`` seconds when given) or all
        that are ready (non-blocking)."""
        assert self.client is not None
        if block:
            sock = self.client._socket  # smpplib has no per-read timeout of its own
            if timeout is not None and sock is not None:
                sock.settimeout(max(timeout, 0.01))
            try:
                self.client.read_once(auto_send_enquire_link=False)
            except TimeoutError:
                return
            finally:
                if timeout is not None and sock is not None:
                    sock.settimeout(self.client.timeout)
        else:
            self.client.poll()

    def listen_once(self) -> None:
        """Idle reading for the listener: on a quiet link, ``enquire_link`` keeps it alive."""
        assert self.client is not None
        self.client.read_once(auto_send_enquire_link=True)

    def _on_deliver(self, pdu: Any, **_: Any) -> int:
        now = timezone.now()
        esm_class = int(pdu.esm_class or 0)
        if esm_class & 0x3C == ESM_CLASS_RECEIPT:
            smsc_id, stat, err = parse_receipt(pdu)
            if self.on_receipt is not None and smsc_id:
                state = SMPP_STAT_STATES.get(stat, DeliveryState.ACCEPTED)
                self.on_receipt(
                    DeliveryReport(
                        provider=PROVIDER,
                        external_id=smsc_id,
                        state=state,
                        sequence=stat,
                        occurred_at=now,
                        error=f"{stat} err:{err}" if state.rank > 2 else "",
                        payload={"err": err},
                    )
                )
        elif self.on_mo is not None:
            data = pdu.short_message or b""
            text = sms_decode(data, int(pdu.data_coding or 0), has_udh=bool(esm_class & 0x40))
            sender, recipient = _text(pdu.source_addr), _text(pdu.destination_addr)
            # SMPP gives an MO no id; a deliver_sm resent after a lost response repeats the
            # same content within the minute, which is what the event key is made of.
            digest = hashlib.sha256(
                f"{sender}|{recipient}|{text}|{now:%Y%m%d%H%M}".encode()
            ).hexdigest()[:32]
            self.on_mo(InboundSms(PROVIDER, digest, sender, recipient, text, now))
        return smpplib.consts.SMPP_ESME_ROK

    # Sending -------------------------------------------------------------------------------

    def _pace(self) -> None:
        if self.throughput <= 0:
            return
        now = time.monotonic()
        if self._next_at > now:
            time.sleep(self._next_at - now)
        self._next_at = max(now, self._next_at) + 1.0 / self.throughput

    def submit(
        self, parts: list[_Part], outcomes: list[_Outcome], *, max_attempts: int = 3
    ) -> None:
        """Send every part within the window; record ids and errors in ``outcomes``."""
        queue: deque[_Part] = deque(parts)
        delayed: list[tuple[float, _Part]] = []
        reconnects = 0
        answered = len(self._responses)
        progress_at = time.monotonic()
        while queue or self._inflight or delayed:
            now = time.monotonic()
            if delayed:
                ready = [p for at, p in delayed if at <= now]
                delayed = [(at, p) for at, p in delayed if at > now]
                queue.extendleft(reversed(ready))
            try:
                if self.client is None:
                    self.connect()
                while queue and len(self._inflight) < self.window:
                    part = queue[0]
                    if outcomes[part.index].status is not None:  # its message already failed
                        queue.popleft()
                        continue
                    self._pace()
                    pdu = self.client.send_message(**part.params)  # type: ignore[union-attr]
                    queue.popleft()
                    self._inflight[pdu.sequence] = part
                if self._inflight:
                    self.read(block=True)
                    self.read(block=False)
                    if len(self._responses) != answered:
                        progress_at = time.monotonic()
                    elif time.monotonic() - progress_at > self.timeout:
                        raise smpplib.exceptions.ConnectionError("no submit_sm_resp in time")
                elif delayed and not queue:
                    time.sleep(max(0.0, min(at for at, _ in delayed) - time.monotonic()))
            except (smpplib.exceptions.ConnectionError, OSError) as exc:
                # Written but unanswered: unknown outcome, never resent.
                for part in self._inflight.values():
                    outcome = outcomes[part.index]
                    outcome.status = SendStatus.FAILED
                    outcome.error = f"SMPP link lost before submit_sm_resp: {exc}"[:500]
                self._inflight.clear()
                self._drop()
                reconnects += 1
                if reconnects > self.reconnect_attempts:
                    raise RetryableGatewayError(f"SMPP link keeps dropping: {exc}") from exc
                continue
            except RetryableGatewayError:
                raise
            self._collect(outcomes, delayed, max_attempts)
            answered = 0

    def _collect(
        self, outcomes: list[_Outcome], delayed: list[tuple[float, _Part]], max_attempts: int
    ) -> None:
        while self._responses:
            pdu = self._responses.popleft()
            part = self._inflight.pop(pdu.sequence, None)
            if part is None:
                continue
            outcome = outcomes[part.index]
            status = int(pdu.status or 0)
            if status == 0:
                outcome.ids[part.number] = _text(pdu.message_id).strip("\0 ")
                continue
            description = smpplib.consts.DESCRIPTIONS.get(status, "unknown")
            error = f"SMPP {status:#04x}: {description}"
            if status in RETRYABLE_STATUSES:
                part.attempts += 1
                if part.attempts < max_attempts:
                    backoff = 0.2 * 2**part.attempts
                    delayed.append((time.monotonic() + backoff, part))
                    continue
                if not outcome.ids:  # nothing of it went out: safe to send again later
                    outcome.status, outcome.retry_after = SendStatus.RETRY, 5.0
                else:
                    outcome.status = SendStatus.FAILED
                    error += " (after part of the message was sent)"
            else:
                outcome.status = SendStatus.FAILED
            outcome.error = error


class SmppBackend(BaseBackend):
    """SMS through a direct SMPP 3.4 link; options fall back to the ``SMPP_*`` settings."""

    def __init__(
        self,
        *,
        host: str | None = None,
        port: int | None = None,
        system_id: str | None = None,
        password: str | None = None,
        system_type: str | None = None,
        source_addr: str | None = None,
        window: int | None = None,
        throughput: float | None = None,
        timeout: float | None = None,
        registered_delivery: int = 1,
        receipt_wait: float = 2.0,
        reconnect_attempts: int = 4,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.source_addr = source_addr if source_addr is not None else settings.SMPP_SOURCE_ADDR
        self.registered_delivery = registered_delivery
        # Before unbinding, wait this long for receipts still due on this session; later ones
        # reach the listener.
        self.receipt_wait = receipt_wait
        self._awaiting: set[str] = set()
        # Parts whose final receipt was read already: a receipt can overtake the end of the
        # batch that submitted its part (it is read while later parts are being sent).
        self._final_seen: set[str] = set()
        self.receipts: list[DeliveryReport] = []
        self.inbound: list[InboundSms] = []
        self._part_ids: dict[str, int] = {}  # SMSC id -> our Message id, for this session
        self._reference = random.randrange(256)  # noqa: S311 - UDH reference, not a secret
        self.session = SmppSession(
            host=host or settings.SMPP_HOST,
            port=int(port or settings.SMPP_PORT),
            system_id=system_id if system_id is not None else settings.SMPP_SYSTEM_ID,
            password=password if password is not None else settings.SMPP_PASSWORD,
            system_type=system_type if system_type is not None else settings.SMPP_SYSTEM_TYPE,
            window=int(window or settings.SMPP_WINDOW),
            throughput=float(throughput if throughput is not None else settings.SMPP_THROUGHPUT),
            timeout=float(timeout or settings.SMPP_TIMEOUT),
            reconnect_attempts=reconnect_attempts,
            on_receipt=self._on_receipt,
            on_mo=self.inbound.append,
        )

    def _on_receipt(self, report: DeliveryReport) -> None:
        if report.state.is_final:
            self._awaiting.discard(report.external_id)
            self._final_seen.add(report.external_id)
        self.receipts.append(report)

    def open(self) -> None:
        if not self.session.bound:
            self.session.connect()

    def close(self) -> None:
        if self.session.bound and self._awaiting:
            deadline = time.monotonic() + self.receipt_wait
            try:
                # Receipts may also go to another bound session (the listener): wait no
                # longer than the grace period for the ones this session still expects.
                while self._awaiting and time.monotonic() < deadline:
                    self.session.read(block=True, timeout=deadline - time.monotonic())
            except (smpplib.exceptions.ConnectionError, OSError):
                pass
        self._awaiting.clear()
        self._final_seen.clear()
        self.session.close()
        self.flush_events()

    def after_send(self) -> None:
        self.flush_events()

    def _params(
        self, message: OutgoingMessage, body: bytes, coding: int, esm: int
    ) -> dict[str, Any]:
        source = str(message.metadata.get("sender") or self.source_addr)
        alphanumeric = not source.lstrip("+").isdigit()
        destination = re.sub(r"\D", "", message.to)  # "+7 916 ..." -> "7916..."
        return {
            "source_addr_ton": 5 if alphanumeric else 1,
            "source_addr_npi": 0 if alphanumeric else 1,
            "source_addr": source,
            "dest_addr_ton": 1,
            "dest_addr_npi": 1,
            "destination_addr": destination,
            "short_message": body,
            "data_coding": coding,
            "esm_class": esm,
            "registered_delivery": self.registered_delivery,
        }

    def send_messages(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        if not messages:
            return []
        parts: list[_Part] = []
        outcomes: list[_Outcome] = []
        for index, message in enumerate(messages):
            self._reference = (self._reference + 1) % 256
            try:
                split = sms_split(message.text, reference=self._reference)
            except MessageTooLong as exc:
                outcomes.append(_Outcome(0, status=SendStatus.FAILED, error=f"too long: {exc}"))
                continue
            outcomes.append(_Outcome(len(split.parts)))
            for number, body in enumerate(split.parts, start=1):
                params = self._params(message, body, split.data_coding, split.esm_class)
                parts.append(_Part(index, number, params))
        self.session.submit(parts, outcomes)
        results = []
        for message, outcome in zip(messages, outcomes, strict=True):
            if outcome.status is None and len(outcome.ids) == outcome.parts:
                for smsc_id in outcome.ids.values():
                    self._part_ids[smsc_id] = message.id
                    if self.registered_delivery & 0x01 and smsc_id not in self._final_seen:
                        self._awaiting.add(smsc_id)
                results.append(
                    SendResult(message.id, SendStatus.SENT, provider_id=outcome.ids[1][:100])
                )
            else:
                for smsc_id in outcome.ids.values():  # partly sent: its receipts still count
                    self._part_ids[smsc_id] = message.id
                results.append(
                    SendResult(
                        message.id,
                        outcome.status or SendStatus.FAILED,
                        error=outcome.error or "incomplete",
                        retry_after=outcome.retry_after,
                    )
                )
        return results

    # Receipts and inbound ------------------------------------------------------------------

    def flush_events(self) -> None:
        """Store receipts and inbound SMS read so far (set-based), then forget them: if storing
        fails, they are kept for the next flush (the SMSC was already told they arrived)."""
        from messaging.services.events import (
            delivery_reports_record_and_apply,
            inbound_sms_receive,
        )

        if self.receipts:
            count = len(self.receipts)
            reports = [
                _with_message(r, self._part_ids.get(r.external_id)) for r in self.receipts[:count]
            ]
            # Reports of Messages already marked sent apply now; the others wait for the sweep.
            delivery_reports_record_and_apply(reports=reports)
            del self.receipts[:count]
        if self.inbound:
            count = len(self.inbound)
            inbound_sms_receive(messages=self.inbound[:count])
            del self.inbound[:count]


def _with_message(report: DeliveryReport, message_id: int | None) -> DeliveryReport:
    if message_id is None:
        return report
    return DeliveryReport(
        provider=report.provider,
        external_id=report.external_id,
        state=report.state,
        sequence=report.sequence,
        occurred_at=report.occurred_at,
        message_id=message_id,
        error=report.error,
        payload=report.payload,
    )


class SmppListener:
    """A bound receiver between campaigns: stores receipts and inbound SMS as they arrive.

    Reads with a short timeout so events are flushed at least every ``flush_seconds``, sends
    ``enquire_link`` when the link has been quiet for ``enquire_link_seconds``, reconnects with
    backoff when the link drops, and unbinds when ``stop`` is set.
    """

    def __init__(
        self,
        *,
        host: str | None = None,
        port: int | None = None,
        system_id: str | None = None,
        password: str | None = None,
        system_type: str | None = None,
        bind: str = "receiver",
        enquire_link_seconds: float | None = None,
        flush_seconds: float = 0.5,
        flush_size: int = 500,
    ) -> None:
        self.reports: list[DeliveryReport] = []
        self.inbound: list[InboundSms] = []
        self.session = SmppSession(
            host=host or settings.SMPP_HOST,
            port=int(port or settings.SMPP_PORT),
            system_id=system_id if system_id is not None else settings.SMPP_SYSTEM_ID,
            password=password if password is not None else settings.SMPP_PASSWORD,
            system_type=system_type if system_type is not None else settings.SMPP_SYSTEM_TYPE,
            bind=bind,
            timeout=min(flush_seconds, 1.0),
            on_receipt=self.reports.append,
            on_mo=self.inbound.append,
        )
        self.enquire_link_seconds = float(
            enquire_link_seconds or settings.SMPP_ENQUIRE_LINK_SECONDS
        )
        self.flush_seconds = flush_seconds
        self.flush_size = flush_size
        self.received = 0

    def flush(self) -> None:
        from messaging.services.events import (
            delivery_reports_record_and_apply,
            inbound_sms_receive,
        )

        if self.reports:
            reports, self.reports[:] = list(self.reports), []
            self.received += len(reports)
            delivery_reports_record_and_apply(reports=reports)
        if self.inbound:
            inbound, self.inbound[:] = list(self.inbound), []
            self.received += len(inbound)
            inbound_sms_receive(messages=inbound)

    def run(self, stop: Any) -> None:
        """Until ``stop`` (a ``threading.Event``) is set."""
        backoff = 0.5
        while not stop.is_set():
            try:
                if not self.session.bound:
                    self.session.connect()
                    backoff = 0.5
                    logger.info(
                        "SMPP listener bound to %s:%s", self.session.host, self.session.port
                    )
                self._loop(stop)
            except (RetryableGatewayError, smpplib.exceptions.ConnectionError, OSError) as exc:
                logger.warning("SMPP listener: %s; reconnecting in %.1f s", exc, backoff)
                self.session._drop()
                self.flush()
                stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
        self.session.close()
        self.flush()
        # The listener runs in a thread or process of its own: its database connection ends
        # with it (a test database cannot be dropped while it stays open).
        connections.close_all()

    def _loop(self, stop: Any) -> None:
        client = self.session.client
        assert client is not None
        flushed_at = quiet_since = time.monotonic()
        while not stop.is_set():
            before = len(self.reports) + len(self.inbound)
            self.session.read(block=True)
            now = time.monotonic()
            if len(self.reports) + len(self.inbound) != before:
                quiet_since = now
            elif now - quiet_since > self.enquire_link_seconds:
                client.send_pdu(smpplib.smpp.make_pdu("enquire_link", client=client))
                quiet_since = now
            pending = len(self.reports) + len(self.inbound)
            if pending >= self.flush_size or (pending and now - flushed_at >= self.flush_seconds):
                self.flush()
                flushed_at = now
