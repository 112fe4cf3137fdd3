"""One headless baresip user agent driven over its ``ctrl_tcp`` interface (JSON in netstrings).

Debian's baresip 1.0.0 is the autodialer's SIP and RTP engine: we write its configuration (loopback
control socket, no registrar unless the trunk needs one), start it by PID, and talk to it with a
few menu commands (``ausrc``, ``dial``, ``hangup``). Its events (``CALL_RINGING``,
``CALL_ESTABLISHED``, ``CALL_DTMF_START``, ``CALL_CLOSED``) arrive on the same socket.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODULE_PATH = "/usr/lib/baresip/modules"


class BaresipError(Exception):
    pass


def netstring(payload: bytes) -> bytes:
    return str(len(payload)).encode() + b":" + payload + b","


class NetstringReader:
    """Splits a byte stream into netstrings; keeps a partial one for the next read."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        self.buffer += data
        out = []
        while True:
            head, sep, rest = self.buffer.partition(b":")
            if not sep:
                break
            if not head.isdigit():
                raise BaresipError(f"bad netstring header {head[:20]!r}")
            size = int(head)
            if len(rest) < size + 1:
                break
            if rest[size : size + 1] != b",":
                raise BaresipError("netstring without its trailing comma")
            out.append(rest[:size])
            self.buffer = rest[size + 1 :]
        return out


@dataclass
class BaresipConfig:
    """What one line needs: its own SIP port, control port and RTP port range."""

    directory: Path
    sip_port: int
    ctrl_port: int
    rtp_ports: tuple[int, int]
    account: str  # e.g. "<sip:lichno@127.0.0.1>;regint=0"
    silence: Path  # the audio source between calls
    address: str = "127.0.0.1"
    extra: dict[str, str] = field(default_factory=dict)

    def write(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        lines = {
            "poll_method": "epoll",
            "sip_listen": f"{self.address}:{self.sip_port}",
            # Must be an address: baresip 1.0.0 does not accept an interface name such as "lo".
            "net_interface": self.address,
            "audio_player": "aufile,/dev/null",
            "audio_source": f"aufile,{self.silence}",
            "audio_alert": "aufile,/dev/null",
            "rtp_ports": f"{self.rtp_ports[0]}-{self.rtp_ports[1]}",
            "module_path": MODULE_PATH,
            "ctrl_tcp_listen": f"127.0.0.1:{self.ctrl_port}",
            **self.extra,
        }
        modules = ["g711.so", "aufile.so"]
        apps = ["account.so", "menu.so", "ctrl_tcp.so"]
        text = "\n".join(f"{k} {v}" for k, v in lines.items())
        text += "\n" + "\n".join(f"module {m}" for m in modules)
        text += "\n" + "\n".join(f"module_app {m}" for m in apps) + "\n"
        (self.directory / "config").write_text(text, encoding="utf-8")
        (self.directory / "accounts").write_text(self.account + "\n", encoding="utf-8")
        (self.directory / "contacts").write_text("", encoding="utf-8")


class Baresip:
    """A baresip process and its control connection. Not thread-safe: one line, one thread."""

    def __init__(self, config: BaresipConfig, *, binary: str = "baresip") -> None:
        self.config = config
        self.binary = binary
        self.process: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.reader = NetstringReader()
        self.events: list[dict[str, Any]] = []
        self._token = 0
        self._lock = threading.Lock()

    def start(self, *, timeout: float = 10.0) -> None:
        path = shutil.which(self.binary)
        if path is None:
            raise BaresipError(f"{self.binary} is not installed")
        self.config.write()
        log = open(self.config.directory / "baresip.log", "wb")  # noqa: SIM115 - lives with it
        self.process = subprocess.Popen(
            [path, "-f", str(self.config.directory)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BaresipError(f"baresip exited with {self.process.returncode}")
            try:
                self.sock = socket.create_connection(("127.0.0.1", self.config.ctrl_port), 1)
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BaresipError("baresip's control port did not open")

    def stop(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(3)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(3)
        self.process = None

    def command(self, name: str, params: str = "", *, timeout: float = 5.0) -> str:
        """Send a command and wait for its response; events read meanwhile are kept."""
        if self.sock is None:
            raise BaresipError("not started")
        self._token += 1
        token = f"t{self._token}"
        body = json.dumps({"command": name, "params": params, "token": token}).encode()
        self.sock.sendall(netstring(body))
        deadline = time.monotonic() + timeout
        response: dict[str, Any] | None = None
        while response is None and time.monotonic() < deadline:
            # One read may carry the response and the events after it (a 486 arrives at once):
            # keep all of them.
            for item in self._read(deadline - time.monotonic()):
                if item.get("response") and item.get("token") == token:
                    response = item
                elif item.get("event"):
                    self.events.append(item)
        if response is None:
            raise BaresipError(f"{name}: no response in {timeout}s")
        if not response.get("ok"):
            raise BaresipError(f"{name}: {str(response.get('data', '')).strip()}")
        return str(response.get("data", ""))

    def next_event(self, timeout: float) -> dict[str, Any] | None:
        if self.events:
            return self.events.pop(0)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for item in self._read(deadline - time.monotonic()):
                if item.get("event"):
                    self.events.append(item)
            if self.events:
                return self.events.pop(0)
        return None

    def drain_events(self) -> Iterator[dict[str, Any]]:
        while self.events:
            yield self.events.pop(0)

    def _read(self, timeout: float) -> list[dict[str, Any]]:
        assert self.sock is not None
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return []
        if not data:
            raise BaresipError("baresip closed the control connection")
        return [json.loads(chunk) for chunk in self.reader.feed(data)]
