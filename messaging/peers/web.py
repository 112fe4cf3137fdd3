"""Lichno's web application served as in production, for benchmarks and real-peer tests.

Gunicorn with threaded workers (``gthread``) serving ``crm.wsgi:application``: pre-forked worker
processes sharing one listening socket, each with a pool of threads that keep their database
connections and their callers' keep-alive connections (Kannel's smsbox reuses its HTTP
connections). Started as a process of its own and stopped by PID, like the other peers.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from messaging.peers.process import PeerProcess, free_port, start_process, wait_for_port

NOOP_APP = "messaging.peers.noop_wsgi:application"


@dataclass
class WebServer:
    process: PeerProcess
    host: str
    port: int
    access_log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def requests_served(self) -> int:
        """Requests written to the access log (only when started with ``access_log=True``)."""
        if self.access_log is None or not self.access_log.exists():
            return 0
        with self.access_log.open("rb") as log:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: log.read(1 << 16), b""))

    def stop(self) -> None:
        self.process.stop(grace=10.0)


@dataclass
class WebConfig:
    workdir: Path
    app: str = "crm.wsgi:application"
    workers: int = 2
    threads: int = 16
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    # Environment of the workers on top of ours: the settings they need (secrets, database).
    env: dict[str, str] = field(default_factory=dict)
    access_log: bool = False


def web_start(config: WebConfig) -> WebServer:
    """Start gunicorn and wait until it accepts connections."""
    config.workdir.mkdir(parents=True, exist_ok=True)
    access_log = config.workdir / "access.log" if config.access_log else None
    args = [
        sys.executable,
        "-m",
        "gunicorn",
        config.app,
        "--worker-class",
        "gthread",
        "--workers",
        str(config.workers),
        "--threads",
        str(config.threads),
        "--bind",
        f"{config.host}:{config.port}",
        "--keep-alive",
        "30",
        "--graceful-timeout",
        "5",
        "--log-level",
        "warning",
        "--chdir",
        str(Path(__file__).resolve().parents[2]),
    ]
    if access_log is not None:
        args += ["--access-logfile", str(access_log), "--access-logformat", "%(s)s"]
    env = {"DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "crm.settings")}
    process = start_process("gunicorn", args, log_dir=config.workdir, env={**env, **config.env})
    try:
        wait_for_port(config.host, config.port, timeout=30, process=process)
    except BaseException:
        process.stop()
        raise
    return WebServer(process, config.host, config.port, access_log)
