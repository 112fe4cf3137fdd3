"""Real SIP peers for tests and demos: SIPp (Debian ``sip-tester``) as the called party.

Scenarios live in ``messaging/peers/sipp/``: ``answer_dtmf.xml`` (rings, answers, presses a digit
from the RFC 2833 pcaps the Debian package ships, waits for our BYE), ``busy.xml`` (486) and
``no_answer.xml`` (rings until we CANCEL). Everything binds to loopback; processes are started
and stopped by PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SCENARIOS = Path(__file__).resolve().parent / "sipp"
PCAP_DIR = Path("/usr/share/sip-tester")
PCAP_NAMES = {"*": "star", "#": "pound"}


def sipp_available() -> bool:
    return shutil.which("sipp") is not None and (PCAP_DIR / "dtmf_2833_1.pcap").exists()


def baresip_available() -> bool:
    return all(shutil.which(b) for b in ("baresip", "espeak-ng", "sox"))


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pcap(digit: str) -> Path:
    return PCAP_DIR / f"dtmf_2833_{PCAP_NAMES.get(digit, digit)}.pcap"


def scenario(kind: str, *, digit: str = "1", ring_ms: int = 200, press_after_ms: int = 500) -> str:
    """The scenario XML: ``answer`` (with ``digit``), ``busy``, ``no_answer``, or ``by_number``
    (the demo network: what happens depends on the number's last digit, see the XML)."""
    if kind == "by_number":
        return (
            (SCENARIOS / "by_number.xml")
            .read_text(encoding="utf-8")
            .replace("@RING_MS@", str(ring_ms))
            .replace("@PRESS_AFTER_MS@", str(press_after_ms))
            .replace("@PCAP1@", str(_pcap("1")))
            .replace("@PCAP2@", str(_pcap("2")))
        )
    if kind == "answer":
        pcap = _pcap(digit)
        return (
            (SCENARIOS / "answer_dtmf.xml")
            .read_text(encoding="utf-8")
            .replace("@RING_MS@", str(ring_ms))
            .replace("@PRESS_AFTER_MS@", str(press_after_ms))
            .replace("@PCAP@", str(pcap))
        )
    return (SCENARIOS / f"{kind}.xml").read_text(encoding="utf-8")


@dataclass
class SippPeer:
    """A SIPp called party on 127.0.0.1:``port`` running one scenario for every call."""

    kind: str
    digit: str = "1"
    port: int = field(default_factory=free_udp_port)
    media_port: int = field(default_factory=free_udp_port)
    ring_ms: int = 200
    press_after_ms: int = 500
    process: subprocess.Popen[bytes] | None = None
    workdir: Path | None = None

    @property
    def uri_template(self) -> str:
        return f"sip:{{digits}}@127.0.0.1:{self.port}"

    def start(self) -> SippPeer:
        self.workdir = Path(tempfile.mkdtemp(prefix=f"sipp-{self.kind}-"))
        xml = self.workdir / "scenario.xml"
        xml.write_text(
            scenario(
                self.kind,
                digit=self.digit,
                ring_ms=self.ring_ms,
                press_after_ms=self.press_after_ms,
            ),
            encoding="utf-8",
        )
        log = open(self.workdir / "sipp.log", "wb")  # noqa: SIM115 - lives with the process
        self.process = subprocess.Popen(
            [
                "sipp",
                "-sf",
                str(xml),
                "-i",
                "127.0.0.1",
                "-mi",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-mp",
                str(self.media_port),
                "-nostdin",
                "-trace_err",
                "-error_file",
                str(self.workdir / "errors.log"),
            ],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        time.sleep(0.3)
        if self.process.poll() is not None:
            raise RuntimeError(
                f"sipp exited: {(self.workdir / 'sipp.log').read_text(errors='replace')[-500:]}"
            )
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(3)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(3)
        self.process = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> SippPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def baresip_callee_account(user: str = "callee", port: int = 5080) -> str:
    """An auto-answering baresip account (no registrar) for a baresip-to-baresip smoke test."""
    return f"<sip:{user}@127.0.0.1:{port}>;regint=0;answermode=auto"
