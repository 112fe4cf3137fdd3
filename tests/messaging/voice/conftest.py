"""Voice fixtures: call messages as dispatch leaves them, an always-open call window, SIP peers.

Real peers (baresip, SIPp, espeak-ng, sox) come through ``require_service``: skipped on a laptop
without them, a failure in CI.
"""

from __future__ import annotations

import datetime as dt
import random
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from crm.models import Channel, Client, ConsentAction, ConsentPurpose, ConsentSource
from crm.services import ConsentChange, consent_record_many
from messaging.models import ContactPolicy, Message, MessageStatus
from messaging.peers.sip import SippPeer, baresip_available, sipp_available
from tests.conftest import require_service
from tests.factories import ClientFactory, OfferFactory
from tests.messaging.conftest import calls_all_day_policy

SCRIPT = (
    "Здравствуйте, {name}! Для вас скидка двадцать процентов на корм. "
    "Нажмите один, чтобы мы перезвонили, или два, чтобы больше не звонить."
)


def dialer_base_port(lines: int = 4) -> int:
    """A base port for the SIP dialer's lines whose SIP and control ports are free now.

    Below the kernel's ephemeral range (32768 and up), so the many outgoing connections of a
    test run (databases, Kannel's callbacks) never take a port a line is about to listen on; a
    random base keeps the suites that share the machine apart."""
    for _ in range(100):
        base = random.randrange(20000, 32000, 400)
        wanted = [(socket.SOCK_DGRAM, base + 4 * line) for line in range(lines)]
        wanted += [(socket.SOCK_STREAM, base + 4 * line) for line in range(lines)]
        wanted += [(socket.SOCK_STREAM, base + 100 + line) for line in range(lines)]
        if all(_bindable(kind, port) for kind, port in wanted):
            return base
    raise RuntimeError("no free ports for the dialer's lines")


def _bindable(kind: int, port: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def grant_calls(clients: list[Client]) -> None:
    consent_record_many(
        changes=[
            ConsentChange(
                client_id=c.pk,
                channel=Channel.CALL,
                purpose=ConsentPurpose.MARKETING,
                action=ConsentAction.GRANTED,
                source=ConsentSource.WEB_FORM,
                wording_version="v1",
                occurred_at=timezone.now() - dt.timedelta(days=30),
            )
            for c in clients
        ]
    )


@pytest.fixture
def open_call_window(db: None) -> ContactPolicy:
    """Calls allowed around the clock, so real-peer tests pass whatever the hour in CI."""
    return calls_all_day_policy()


@pytest.fixture
def make_call(db: None) -> Callable[..., Message]:
    """A call message as dispatch leaves it for the SIP dialer: sent, provider id sip-<id>."""
    offer = OfferFactory(channels=["call"])

    def make(
        client: Client | None = None,
        *,
        status: str = MessageStatus.SENT,
        key: str | None = None,
        sent_at: dt.datetime | None = None,
        **fields: Any,
    ) -> Message:
        client = client or ClientFactory(time_zone="Europe/Moscow")
        if (
            not fields.get("is_transactional")
            and not client.consents.filter(channel=Channel.CALL, is_granted=True).exists()
        ):
            grant_calls([client])  # dispatch hands over marketing calls with consent only
        sent_at = sent_at or timezone.now()
        message = Message.objects.create(
            client=client,
            channel=Channel.CALL,
            offer=fields.pop("offer", offer),
            recipient=client.phone.as_e164,
            text=SCRIPT.format(name=client.first_name),
            reason="Вы недавно покупали корм для кошек",
            scheduled_for=sent_at,
            expires_at=fields.pop("expires_at", sent_at + dt.timedelta(days=7)),
            status=status,
            sent_at=sent_at if status != MessageStatus.PLANNED else None,
            idempotency_key=key or f"run:1:{client.pk}:call",
            **fields,
        )
        if status == MessageStatus.SENT:
            Message.objects.filter(pk=message.pk).update(provider_id=f"sip-{message.pk}")
            message.provider_id = f"sip-{message.pk}"
        return message

    return make


@pytest.fixture(scope="session")
def prompt_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("voice-prompts")


@pytest.fixture
def sip_peers() -> None:
    require_service(
        baresip_available() and sipp_available(), "baresip, SIPp (sip-tester), espeak-ng and sox"
    )


@pytest.fixture
def sipp(sip_peers: None) -> Iterator[Callable[..., SippPeer]]:
    """Start SIPp called parties (stopped by PID afterwards)."""
    started: list[SippPeer] = []

    def start(kind: str, digit: str = "1") -> SippPeer:
        peer = SippPeer(kind, digit=digit).start()
        started.append(peer)
        return peer

    yield start
    for peer in started:
        peer.stop()


@pytest.fixture
def use_sip_backend(
    settings: Any, tmp_path: Path, prompt_cache: Path, open_call_window: ContactPolicy
) -> Callable[..., None]:
    def use(peer: SippPeer, **options: Any) -> None:
        settings.VOICE_BACKEND = "messaging.backends.sip.SipBackend"
        settings.VOICE_BACKEND_OPTIONS = {
            "uri_template": peer.uri_template,
            "lines": 1,
            "ring_timeout": 2,
            "dtmf_window": 3,
            "base_port": dialer_base_port(),
            "prompt_dir": str(prompt_cache),
            "work_dir": str(tmp_path / "dialer"),
            **options,
        }

    return use
