"""Start a peer process, wait for its port, stop it by PID (SIGTERM, brief wait, SIGKILL)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_for_port(
    host: str, port: int, *, timeout: float = 15.0, process: PeerProcess | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        if process is not None and process.popen.poll() is not None:
            raise RuntimeError(
                f"{process.name} exited ({process.popen.returncode}): {process.tail()}"
            )
        time.sleep(0.05)
    raise TimeoutError(f"{host}:{port} did not open within {timeout:.0f} s")


@dataclass
class PeerProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, *, grace: float = 3.0) -> None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL (bearerbox takes 30 s to drain)."""
        if self.popen.poll() is not None:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.popen.wait(timeout=5)
        except ProcessLookupError:
            pass


def start_process(
    name: str, args: Sequence[str], *, log_dir: Path, env: dict[str, str] | None = None
) -> PeerProcess:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.out"
    log = log_path.open("ab")
    popen = subprocess.Popen(  # noqa: S603 - our own argument list, no shell
        list(args),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        start_new_session=True,  # a Ctrl-C in the terminal is ours to forward, not theirs
    )
    log.close()
    return PeerProcess(name, popen, log_path)
