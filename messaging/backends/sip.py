"""Lichno's own autodialer for a company SIP trunk, on Debian's baresip.

How calls run, and why:

- ``send_messages`` only validates numbers and answers ``SENT`` (queued for the dialer). Placing
  a call takes tens of seconds, far longer than a dispatch chunk may hold its claim, and dispatch
  must commit "sent" before any outcome arrives, so the outcome always moves the message forward.
  Sending twice is harmless (the dialer dials each message once), hence ``idempotent``.
- The ``autodialer`` management command (``messaging.services.calls.autodial_run``) claims sent
  call messages from the database and feeds them to :class:`SipDialer`, which runs ``lines``
  baresip user agents, one call each at a time. Each line plays the voice script rendered to
  speech, collects RFC 2833 digits and hangs up; every step is reported as a ``CallEvent`` that
  the service stores once and applies.
- Prompts: ``espeak-ng`` (Russian voice) -> ``sox`` 8 kHz mono 16-bit, padded with silence for the
  DTMF window (baresip hangs up when its audio file ends), cached per text under
  ``VOICE_PROMPT_DIR``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings

from messaging.backends.baresip import Baresip, BaresipConfig, BaresipError
from messaging.backends.base import (
    OutgoingMessage,
    PermanentGatewayError,
    SendResult,
    SendStatus,
)
from messaging.backends.voice import VoiceBackend, phone_digits
from messaging.events import CallEvent
from messaging.models import CallDirection, CallState

logger = logging.getLogger(__name__)

PROVIDER = "sip"


def _now() -> datetime:
    return datetime.now(UTC)


class PromptError(PermanentGatewayError):
    pass


def render_prompt(
    text: str, *, directory: Path, voice: str = "ru", speed: int = 150, pad_seconds: float = 6.0
) -> Path:
    """The script as an 8 kHz mono 16-bit WAV with ``pad_seconds`` of silence; cached per text."""
    key = hashlib.sha256(f"{voice}|{speed}|{pad_seconds}|{text}".encode()).hexdigest()[:40]
    target = directory / f"{key}.wav"
    if target.exists():
        return target
    espeak, sox = shutil.which("espeak-ng"), shutil.which("sox")
    if espeak is None or sox is None:
        raise PromptError("espeak-ng and sox are needed to render voice prompts")
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        raw, out = Path(tmp) / "raw.wav", Path(tmp) / "out.wav"
        # The text goes in on stdin: a script starting with "-" must not read as an option.
        subprocess.run(
            [espeak, "-v", voice, "-s", str(speed), "-w", str(raw), "--stdin"],
            input=text.encode(),
            check=True,
            timeout=60,
            capture_output=True,
        )
        subprocess.run(
            [sox, str(raw), "-r", "8000", "-c", "1", "-b", "16", str(out)]
            + ["pad", "0", str(pad_seconds)],
            check=True,
            timeout=60,
            capture_output=True,
        )
        os.replace(out, target)  # atomic: a concurrent renderer of the same text is harmless
    return target


def silence(directory: Path, seconds: float = 1.0) -> Path:
    target = directory / f"silence-{seconds:g}.wav"
    if not target.exists():
        sox = shutil.which("sox")
        if sox is None:
            raise PromptError("sox is needed to render voice prompts")
        directory.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp.wav")
        subprocess.run(
            [sox, "-n", "-r", "8000", "-c", "1", "-b", "16", str(tmp), "trim", "0", str(seconds)],
            check=True,
            timeout=30,
            capture_output=True,
        )
        os.replace(tmp, target)
    return target


@dataclass(frozen=True)
class DialJob:
    message_id: int | None
    call_id: str
    to: str  # E.164
    text: str


class SipBackend(VoiceBackend):
    """Options (``VOICE_BACKEND_OPTIONS``):

    ``lines`` concurrent calls; ``uri_template`` the callee's SIP URI with ``{digits}`` (number
    without "+") or ``{number}``; ``account`` baresip's account line (caller id, trunk
    credentials, ``outbound=`` proxy); ``ring_timeout`` seconds before an unanswered call counts
    as "no answer"; ``dtmf_window`` seconds of silence after the prompt; ``max_call_seconds``;
    ``hangup_digits`` digits after which the call ends at once; ``voice``/``speed`` of espeak-ng;
    ``base_port`` first of the local SIP/control/RTP ports; ``prompt_dir`` and ``work_dir``.
    """

    provider = PROVIDER
    uses_dialer = True
    idempotent = True

    def __init__(
        self,
        *,
        lines: int = 4,
        uri_template: str = "sip:{digits}@127.0.0.1:5060",
        account: str = "<sip:lichno@127.0.0.1>;regint=0",
        ring_timeout: float = 30.0,
        dtmf_window: float = 6.0,
        max_call_seconds: float = 120.0,
        hangup_digits: str = "12",
        voice: str = "ru",
        speed: int = 150,
        base_port: int = 25060,
        address: str = "127.0.0.1",
        prompt_dir: str | None = None,
        work_dir: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if lines < 1:
            raise PermanentGatewayError("the SIP backend needs at least one line")
        if "{digits}" not in uri_template and "{number}" not in uri_template:
            raise PermanentGatewayError("uri_template needs {digits} or {number}")
        self.lines = lines
        self.uri_template = uri_template
        self.account = account
        self.ring_timeout = ring_timeout
        self.dtmf_window = dtmf_window
        self.max_call_seconds = max_call_seconds
        self.hangup_digits = hangup_digits
        self.voice = voice
        self.speed = speed
        self.base_port = base_port
        self.address = address
        self.prompt_dir = Path(prompt_dir or settings.VOICE_PROMPT_DIR)
        self.work_dir = Path(work_dir or settings.VOICE_WORK_DIR)

    def send_messages(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        results = []
        for message in messages:
            digits = phone_digits(message.to)
            if not message.to.startswith("+") or not 8 <= len(digits) <= 15:
                results.append(SendResult(message.id, SendStatus.FAILED, error="invalid number"))
            elif not message.text.strip():
                results.append(SendResult(message.id, SendStatus.FAILED, error="empty script"))
            else:
                results.append(
                    SendResult(message.id, SendStatus.SENT, provider_id=call_id_for(message.id))
                )
        return results

    def uri(self, number: str) -> str:
        return self.uri_template.format(digits=phone_digits(number), number=number)

    def prompt_for(self, text: str) -> Path:
        return render_prompt(
            text,
            directory=self.prompt_dir,
            voice=self.voice,
            speed=self.speed,
            pad_seconds=self.dtmf_window,
        )

    def dialer(self, *, lines: int | None = None) -> SipDialer:
        return SipDialer(self, lines=lines or self.lines)


def call_id_for(message_id: int) -> str:
    return f"sip-{message_id}"


_STOP = object()


class SipDialer:
    """``lines`` baresip user agents, each running one call at a time from a shared queue.

    Use as a context manager; :meth:`submit` jobs while :meth:`free_lines` > 0 and collect the
    events with :meth:`events` (from the caller's thread, which is the one that may touch the
    database).
    """

    def __init__(self, backend: SipBackend, *, lines: int) -> None:
        self.backend = backend
        self.lines = lines
        self.jobs: queue.Queue[Any] = queue.Queue()
        self.out: queue.Queue[CallEvent] = queue.Queue()
        self.threads: list[threading.Thread] = []
        self.agents: list[Baresip] = []
        self._busy = 0
        self._lock = threading.Lock()

    # Lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> SipDialer:
        b = self.backend
        quiet = silence(b.prompt_dir)
        run_dir = b.work_dir / f"dialer-{os.getpid()}"
        try:
            for line in range(self.lines):
                config = BaresipConfig(
                    directory=run_dir / f"line{line}",
                    sip_port=b.base_port + 4 * line,  # UDP+TCP on it, TLS on the next
                    ctrl_port=b.base_port + 100 + line,
                    rtp_ports=(b.base_port + 200 + line * 20, b.base_port + 219 + line * 20),
                    account=b.account,
                    silence=quiet,
                    address=b.address,
                )
                agent = Baresip(config)
                self.agents.append(agent)
                agent.start()
        except BaseException:  # an exit or Ctrl-C while starting too: no agent may outlive us
            self._stop_agents()
            raise
        for line, agent in enumerate(self.agents):
            thread = threading.Thread(
                target=self._line, args=(agent,), name=f"sip-line-{line}", daemon=True
            )
            thread.start()
            self.threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        for _ in self.threads:
            self.jobs.put(_STOP)
        for thread in self.threads:
            thread.join(self.backend.max_call_seconds + self.backend.ring_timeout + 10)
        self._stop_agents()

    def _stop_agents(self) -> None:
        for agent in self.agents:
            with contextlib.suppress(Exception):
                agent.stop()
        self.agents = []

    # Work -----------------------------------------------------------------------------------

    def submit(self, job: DialJob) -> None:
        with self._lock:
            self._busy += 1
        self.jobs.put(job)

    def free_lines(self) -> int:
        with self._lock:
            return max(self.lines - self._busy, 0)

    def busy(self) -> int:
        with self._lock:
            return self._busy

    def events(self, timeout: float = 0.0) -> list[CallEvent]:
        out = []
        try:
            out.append(self.out.get(timeout=timeout) if timeout else self.out.get_nowait())
            while True:
                out.append(self.out.get_nowait())
        except queue.Empty:
            pass
        return out

    def _line(self, agent: Baresip) -> None:
        while True:
            job = self.jobs.get()
            if job is _STOP:
                return
            try:
                self._call(agent, job, self.out.put)
            except Exception as exc:  # noqa: BLE001 - one call's failure must not stop the line
                logger.exception("call %s failed", job.call_id)
                self.out.put(self._event(job, CallState.ENDED, 99, disposition="failed", error=exc))
                with contextlib.suppress(Exception):
                    agent.stop()
                    agent.start()
            finally:
                with self._lock:
                    self._busy -= 1

    def _event(
        self,
        job: DialJob,
        state: CallState,
        seq: int,
        *,
        digits: str = "",
        disposition: str = "",
        duration: int | None = None,
        error: object = None,
    ) -> CallEvent:
        payload: dict[str, Any] = {}
        if error:
            payload["reason"] = str(error)[:200]
        return CallEvent(
            provider=PROVIDER,
            call_id=job.call_id,
            state=state,
            direction=CallDirection.OUTBOUND,
            occurred_at=_now(),
            to_number=job.to,
            digits=digits,
            disposition=disposition,
            duration=duration,
            sequence=f"{seq:03d}-{state}",
            message_id=job.message_id,
            payload=payload,
        )

    def _call(self, agent: Baresip, job: DialJob, emit: Callable[[CallEvent], None]) -> None:
        b = self.backend
        prompt = b.prompt_for(job.text)
        previous = {e.get("id") for e in agent.drain_events()}
        agent.command("ausrc", f"aufile,{prompt}")
        seq = 0
        emit(self._event(job, CallState.RINGING, seq))
        started = time.monotonic()
        agent.command("dial", b.uri(job.to))
        call_id: str | None = None
        answered_at: float | None = None
        digits = ""
        gave_up = ""
        hung_up = False
        reason = ""
        while True:
            event = agent.next_event(0.2)
            now = time.monotonic()
            if event is not None:
                eid = event.get("id")
                if eid and eid in previous:
                    continue  # a late event of the line's previous call
                if eid and call_id is None and event.get("class") == "call":
                    call_id = eid
                kind = event.get("type")
                if kind == "CALL_ESTABLISHED" and answered_at is None:
                    answered_at = now
                    seq += 1
                    emit(self._event(job, CallState.ANSWERED, seq))
                elif kind == "CALL_DTMF_START":
                    digit = str(event.get("param", ""))[:1]
                    if digit:
                        digits += digit
                        seq += 1
                        emit(self._event(job, CallState.DTMF, seq, digits=digit))
                        if digit in b.hangup_digits and not hung_up:
                            hung_up = True
                            self._hangup(agent)
                elif kind == "CALL_CLOSED":
                    reason = str(event.get("param", ""))
                    break
            if answered_at is None and not hung_up and now - started > b.ring_timeout:
                gave_up, hung_up = "no_answer", True
                self._hangup(agent)
            elif answered_at is not None and not hung_up and now - answered_at > b.max_call_seconds:
                hung_up = True
                self._hangup(agent)
            if now - started > b.ring_timeout + b.max_call_seconds + 15:
                raise BaresipError("the call did not close")
        duration = None
        if answered_at is not None:
            disposition = "answered"
            duration = round(time.monotonic() - answered_at)
        elif gave_up:
            disposition = gave_up
        else:
            disposition = disposition_from_reason(reason)
        seq += 1
        emit(
            self._event(
                job,
                CallState.ENDED,
                seq,
                disposition=disposition,
                duration=duration,
                error=reason,
            )
        )

    @staticmethod
    def _hangup(agent: Baresip) -> None:
        with contextlib.suppress(BaresipError):
            agent.command("hangup")


def disposition_from_reason(reason: str) -> str:
    """baresip's CALL_CLOSED text ("486 Busy Here", "408 Request Timeout") -> our disposition."""
    code = reason.split(" ", 1)[0]
    if code in {"486", "600"}:
        return "busy"
    if code in {"408", "480", "487"}:
        return "no_answer"
    return "failed"
