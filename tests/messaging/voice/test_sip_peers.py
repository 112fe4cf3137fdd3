"""The ``sip`` backend against real called parties: baresip dials SIPp over loopback.

Each scenario's outcome lands on its Message, and the follow-ups happen: "press 1" opens a
callback request for operators, "press 2" withdraws call consent and blocks the number, busy and
no answer schedule another attempt.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from crm.models import Channel, Consent, ConsentPurpose
from messaging.models import (
    Call,
    CallbackRequest,
    CallbackSource,
    CallState,
    Message,
    MessageStatus,
    NumberBlock,
    NumberBlockReason,
)
from messaging.peers.sip import SippPeer
from messaging.services.calls import autodial_run
from tests.factories import ClientFactory
from tests.messaging.voice.conftest import dialer_base_port, grant_calls

pytestmark = pytest.mark.django_db


def test_answer_and_press_1_opens_a_callback_request(
    sipp: Callable[..., SippPeer], use_sip_backend: Callable[..., None], make_call: Any
) -> None:
    use_sip_backend(sipp("answer", "1"))
    message = make_call()

    result = autodial_run()

    message.refresh_from_db()
    assert result.calls == 1
    assert (message.status, message.dtmf) == (MessageStatus.ANSWERED, "1")
    assert message.call_duration is not None and message.call_duration <= 10
    call = Call.objects.get(message=message)
    assert (call.provider, call.state, call.disposition, call.digits) == (
        "sip",
        CallState.ENDED,
        "answered",
        "1",
    )
    assert call.answered_at is not None and call.ended_at is not None
    request = CallbackRequest.objects.get()
    assert (request.client_id, request.message_id, request.offer_id, request.source) == (
        message.client_id,
        message.pk,
        message.offer_id,
        CallbackSource.IVR,
    )
    assert request.reason == message.reason
    assert not NumberBlock.objects.exists()
    assert Message.objects.count() == 1  # no retry of an answered call


def test_answer_and_press_2_withdraws_consent_and_blocks_the_number(
    sipp: Callable[..., SippPeer], use_sip_backend: Callable[..., None], make_call: Any
) -> None:
    use_sip_backend(sipp("answer", "2"))
    client = ClientFactory(time_zone="Europe/Moscow")
    grant_calls([client])
    message = make_call(client)

    autodial_run()

    message.refresh_from_db()
    assert (message.status, message.dtmf) == (MessageStatus.ANSWERED, "2")
    consent = Consent.objects.get(
        client=client, channel=Channel.CALL, purpose=ConsentPurpose.MARKETING
    )
    assert (consent.is_granted, consent.source) == (False, "ivr")
    block = NumberBlock.objects.get()
    assert (block.phone, block.reason) == (client.phone, NumberBlockReason.DO_NOT_CALL)
    assert not CallbackRequest.objects.exists()


@pytest.mark.parametrize(
    ("kind", "status"), [("busy", MessageStatus.BUSY), ("no_answer", MessageStatus.NO_ANSWER)]
)
def test_busy_and_no_answer_schedule_a_retry(
    kind: str,
    status: str,
    sipp: Callable[..., SippPeer],
    use_sip_backend: Callable[..., None],
    make_call: Any,
    settings: Any,
) -> None:
    settings.VOICE_RETRY_MINUTES = 30
    use_sip_backend(sipp(kind))
    message = make_call()
    before = timezone.now()

    autodial_run()

    message.refresh_from_db()
    assert message.status == status
    assert (message.dtmf, message.call_duration) == ("", None)
    assert Call.objects.get(message=message).disposition == kind
    retry = Message.objects.exclude(pk=message.pk).get()
    assert retry.status == MessageStatus.PLANNED
    assert retry.idempotency_key == f"{message.idempotency_key}#r2"
    assert (retry.client_id, retry.recipient, retry.text, retry.offer_id) == (
        message.client_id,
        message.recipient,
        message.text,
        message.offer_id,
    )
    assert retry.scheduled_for >= before + dt.timedelta(minutes=30)
    assert not CallbackRequest.objects.exists() and not NumberBlock.objects.exists()


def test_twenty_calls_on_four_lines_within_a_minute(
    sipp: Callable[..., SippPeer], use_sip_backend: Callable[..., None], make_call: Any
) -> None:
    use_sip_backend(sipp("answer", "1"), lines=4)
    messages = [make_call() for _ in range(20)]

    result = autodial_run()

    print(
        f"\nautodial: {result.calls} calls on 4 lines in {result.seconds:.1f} s "
        f"= {result.rate_per_minute:.0f} calls/min; outcomes {result.outcomes}"
    )
    assert result.calls == 20
    assert result.seconds < 60
    statuses = set(
        Message.objects.filter(pk__in=[m.pk for m in messages]).values_list("status", "dtmf")
    )
    assert statuses == {(MessageStatus.ANSWERED, "1")}
    assert CallbackRequest.objects.count() == 20


def test_blocked_numbers_are_never_dialled(
    sipp: Callable[..., SippPeer], use_sip_backend: Callable[..., None], make_call: Any
) -> None:
    use_sip_backend(sipp("answer", "1"))
    message = make_call()
    NumberBlock.objects.create(phone=message.recipient, reason=NumberBlockReason.WRONG_NUMBER)

    result = autodial_run()

    message.refresh_from_db()
    assert result.calls == 0
    assert (message.status, message.status_reason) == (MessageStatus.CANCELLED, "number blocked")
    assert not Call.objects.exists()


def test_dispatch_then_autodialer_end_to_end(
    sipp: Callable[..., SippPeer], use_sip_backend: Callable[..., None], make_call: Any
) -> None:
    """A planned call message goes out through dispatch, then the dialer places it."""
    from messaging.services.dispatch import dispatch_due

    use_sip_backend(sipp("answer", "1"))
    client = ClientFactory(time_zone="Europe/Moscow")
    grant_calls([client])
    message = make_call(client, status=MessageStatus.PLANNED)

    dispatched = dispatch_due(channels=[Channel.CALL])
    message.refresh_from_db()
    assert dispatched.sent == 1
    assert message.status in (MessageStatus.SENT, MessageStatus.DIALING)
    assert message.provider_id == f"sip-{message.pk}"

    autodial_run()

    message.refresh_from_db()
    assert (message.status, message.dtmf) == (MessageStatus.ANSWERED, "1")
    assert CallbackRequest.objects.filter(message=message, source=CallbackSource.IVR).exists()


def test_the_demo_network_answers_by_the_numbers_last_digit(
    sipp: Callable[..., SippPeer], use_sip_backend: Callable[..., None], make_call: Any
) -> None:
    """`make gateways`' called party: one SIPp for every number, its last digit says what happens
    (1 press 1, 2 press 2, 3 busy, 4 no answer, others listen)."""
    use_sip_backend(sipp("by_number"), lines=3)
    calls = {
        last: make_call(ClientFactory(phone=f"+7916555000{last}", time_zone="Europe/Moscow"))
        for last in "12345"
    }

    result = autodial_run()

    assert result.calls == 5
    outcome = {}
    for last, message in calls.items():
        message.refresh_from_db()
        outcome[last] = (message.status, message.dtmf)
    assert outcome == {
        "1": (MessageStatus.ANSWERED, "1"),
        "2": (MessageStatus.ANSWERED, "2"),
        "3": (MessageStatus.BUSY, ""),
        "4": (MessageStatus.NO_ANSWER, ""),
        "5": (MessageStatus.ANSWERED, ""),
    }
    assert CallbackRequest.objects.get().client_id == calls["1"].client_id
    assert NumberBlock.objects.get().phone == calls["2"].client.phone


@pytest.mark.django_db(transaction=True)
def test_the_autodialer_stops_its_baresip_lines_on_sigterm(
    postgres: None, sip_peers: None, tmp_path: Path
) -> None:
    """Ctrl-C of `make run` stops the autodialer (SIGINT, then SIGTERM): its baresip agents
    (sessions of their own) must go with it, not outlive it."""
    db = connection.settings_dict
    work_dir = tmp_path / "voice"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "crm.settings",
        "DATABASE_URL": (
            f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        ),
        "VOICE_BACKEND": "messaging.backends.sip.SipBackend",
        "VOICE_BACKEND_OPTIONS": json.dumps(
            {
                "uri_template": "sip:{digits}@127.0.0.1:9",
                "lines": 2,
                "base_port": dialer_base_port(),
                "work_dir": str(work_dir),
                "prompt_dir": str(tmp_path / "prompts"),
            }
        ),
    }
    log = tmp_path / "autodialer.log"
    with log.open("wb") as output:
        dialer = subprocess.Popen(
            [sys.executable, "manage.py", "autodialer"],
            env=env,
            cwd=settings.BASE_DIR,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while (
            time.monotonic() < deadline and dialer.poll() is None and len(_baresips(work_dir)) < 2
        ):
            time.sleep(0.2)
        assert len(_baresips(work_dir)) == 2, log.read_text(errors="replace")[-2000:]
        time.sleep(1)  # the lines are up: the dialer waits for calls

        # make run's Ctrl-C: SIGINT from the terminal, then SIGTERM from make's trap.
        dialer.send_signal(signal.SIGINT)
        time.sleep(0.05)
        dialer.send_signal(signal.SIGTERM)

        dialer.wait(30)  # it exits by its own hand, after stopping its lines
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _baresips(work_dir):
            time.sleep(0.2)
        assert _baresips(work_dir) == []
    finally:
        if dialer.poll() is None:
            dialer.kill()
        for pid in _baresips(work_dir):
            os.kill(pid, signal.SIGKILL)


def _baresips(work_dir: Path) -> list[int]:
    """Running baresip processes whose configuration lies under ``work_dir``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            cmdline
            and cmdline[0].endswith(b"baresip")
            and str(work_dir).encode() in b" ".join(cmdline)
        ):
            found.append(int(proc.name))
    return found
