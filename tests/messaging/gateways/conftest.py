"""Gateway fixtures: real peers (Kannel, the SMPP simulator) on free loopback ports.

Peers are started as their own processes and stopped by PID when the test ends (SIGTERM, a brief
wait, SIGKILL). Without Kannel installed they skip on a laptop and fail in CI
(LICHNO_REQUIRE_SERVICES=1), like every real-service fixture.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connections
from django.utils import timezone

from crm.models import Channel, Client, ConsentAction, ConsentPurpose, ConsentSource
from crm.services import ConsentChange, consent_record_many
from messaging.models import Message, MessageStatus
from messaging.peers.kannel import KannelConfig, KannelPeers, kannel_available, kannel_start
from messaging.peers.process import PeerProcess, free_port
from messaging.peers.smsc import smsc_start
from messaging.peers.web import WebConfig, WebServer, web_start
from tests.conftest import require_service
from tests.factories import ClientFactory

SECRET = "hook-secret-42"
MSK = ZoneInfo("Europe/Moscow")
# Destinations the simulator fails, by suffix (see messaging.peers.smsc).
FAIL_RULE = "undeliv:*13,reject:*99"


def daytime_now() -> dt.datetime:
    """A moment inside every default sending window, never in the future."""
    today = timezone.now().astimezone(MSK).replace(hour=12, minute=0, second=0, microsecond=0)
    return today if today <= timezone.now() else today - dt.timedelta(days=1)


@pytest.fixture
def kannel(tmp_path: Path) -> Iterator[Callable[..., KannelPeers]]:
    """Start Kannel (fakesmsc or an SMPP link) with the given KannelConfig fields."""
    require_service(kannel_available(), "Kannel (apt-get install kannel kannel-extras)")
    started: list[KannelPeers] = []

    def start(**fields: Any) -> KannelPeers:
        config = KannelConfig(workdir=tmp_path / f"kannel{len(started)}", secret=SECRET, **fields)
        peers = kannel_start(config)
        started.append(peers)
        return peers

    yield start
    for peers in started:
        peers.stop()


@pytest.fixture
def smsc(tmp_path: Path) -> Iterator[Callable[..., tuple[PeerProcess, int, Path]]]:
    """Start the SMPP simulator; returns (process, port, journal of 'id destination')."""
    started: list[PeerProcess] = []

    def start(*, fail_rule: str = FAIL_RULE, **options: Any) -> tuple[PeerProcess, int, Path]:
        port = free_port()
        journal = tmp_path / f"smsc{len(started)}.journal"
        process = smsc_start(
            port=port, workdir=tmp_path, fail_rule=fail_rule, journal=journal, **options
        )
        started.append(process)
        return process, port, journal

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def pg_live(postgres: None, live_server: Any, settings: Any, monkeypatch: Any) -> Any:
    """A live Django for the peers to call back, on PostgreSQL (concurrent webhook writers)."""
    # The live server runs each request in a new thread: keep no connection after it.
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)
    settings.HOOKS_KANNEL_SECRET = SECRET
    settings.HOOKS_KANNEL_ALLOWED_IPS = ["127.0.0.1"]
    settings.ALLOWED_HOSTS = ["*"]
    return live_server


@pytest.fixture
def pg_web_start(
    postgres: None, tmp_path: Path, settings: Any
) -> Iterator[Callable[..., WebServer]]:
    """Start Lichno as production serves it (granian, ``crm.wsgi:application``) on the test
    database, for peers to call back (tasks the hooks schedule run in its workers); on a given
    port, or a free one. Stopped when the test ends."""
    db = connections["default"].settings_dict
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    settings.HOOKS_KANNEL_SECRET = SECRET  # our side writes it into each dlr-url
    started: list[WebServer] = []

    def start(port: int | None = None) -> WebServer:
        config = WebConfig(
            workdir=tmp_path / f"web{len(started)}",
            env={
                "DATABASE_URL": url,
                "HOOKS_KANNEL_SECRET": SECRET,
                "HOOKS_KANNEL_ALLOWED_IPS": "127.0.0.1",
                "ALLOWED_HOSTS": "127.0.0.1",
                "CELERY_TASK_ALWAYS_EAGER": "true",
            },
        )
        if port is not None:
            config.port = port
        started.append(web_start(config))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def pg_web(pg_web_start: Callable[..., WebServer]) -> WebServer:
    """Lichno served as in production on the test database (see ``pg_web_start``)."""
    return pg_web_start()


def sms_messages(
    count: int, *, text: Callable[[int], str], phone: Callable[[int], str]
) -> list[Message]:
    """``count`` clients with SMS marketing consent and one planned SMS each (a few statements)."""
    now = daytime_now()
    clients = Client.objects.bulk_create(
        [ClientFactory.build(phone=phone(i), time_zone="Europe/Moscow") for i in range(count)]
    )
    consent_record_many(
        changes=[
            ConsentChange(
                client_id=c.pk,
                channel=Channel.SMS,
                purpose=ConsentPurpose.MARKETING,
                action=ConsentAction.GRANTED,
                source=ConsentSource.WEB_FORM,
                wording_version="v1",
                occurred_at=now - dt.timedelta(days=30),
            )
            for c in clients
        ]
    )
    return Message.objects.bulk_create(
        [
            Message(
                client=c,
                channel=Channel.SMS,
                recipient=c.phone.as_e164,
                text=text(i),
                scheduled_for=now - dt.timedelta(minutes=5),
                status=MessageStatus.PLANNED,
                idempotency_key=f"gw-test:{c.pk}",
            )
            for i, c in enumerate(clients)
        ]
    )


def wait_until(check: Callable[[], bool], *, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)
    return time.monotonic() - started


def read_journal(path: Path) -> dict[str, str]:
    """SMSC id -> destination, as the simulator accepted them."""
    pairs = (line.split() for line in path.read_text().splitlines() if line.strip())
    return {smsc_id: destination for smsc_id, destination in pairs}
