"""Lichno's web application served as in production, for benchmarks and real-peer tests.

Granian serving ``crm.wsgi:application``: worker processes sharing one listening socket, HTTP
handled in Rust with keep-alive (Kannel's smsbox reuses its connections), each worker running
the application in a pool of threads that keep their database connections. Started as a
process of its own and stopped by PID, like the other peers.

Gunicorn's threaded workers were measured first: the same Kannel run took 3.6–5.1 s against
granian's 3.7–3.8 s, its workers spending about 1.2 ms of CPU per callback (HTTP parsing and
thread hand-offs in Python) against granian's 0.9 ms.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from messaging.peers.process import PeerProcess, free_port, start_process, wait_for_port


@dataclass
class WebServer:
    process: PeerProcess
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

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


def web_start(config: WebConfig) -> WebServer:
    """Start granian and wait until it accepts connections."""
    config.workdir.mkdir(parents=True, exist_ok=True)
    args = [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "wsgi",
        config.app,
        "--workers",
        str(config.workers),
        "--blocking-threads",
        str(config.threads),
        "--host",
        config.host,
        "--port",
        str(config.port),
        "--working-dir",
        str(Path(__file__).resolve().parents[2]),
        "--log-level",
        "warning",
    ]
    env = {"DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "crm.settings")}
    process = start_process("granian", args, log_dir=config.workdir, env={**env, **config.env})
    try:
        wait_for_port(config.host, config.port, timeout=30, process=process)
    except BaseException:
        process.stop()
        raise
    return WebServer(process, config.host, config.port)
