"""Reliability on PostgreSQL with real parallel connections and a real Celery worker process.

* Two planners on the same run, and two campaigns planned at once over the same clients: no
  duplicate, no cap exceeded.
* A consent withdrawn while its message is being dispatched: never sent after the withdrawal.
* A worker killed with SIGKILL in the middle of a dispatch and started again: every message is
  sent exactly once (the file backend's journal is the gateway's record).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from crm.models import Channel
from messaging.backends import locmem
from messaging.models import (
    Campaign,
    CampaignRun,
    ChannelRule,
    ContactPolicy,
    Message,
    MessageStatus,
    RunStatus,
)
from messaging.services.campaigns import campaign_run_plan, campaign_run_start
from messaging.services.dispatch import dispatch_due
from tests.concurrency import run_together
from tests.messaging.conftest import NOW, calls_all_day_policy, make_world, withdraw

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_planners_on_one_run_plan_each_client_once(postgres: None) -> None:
    w = make_world(60)
    run = campaign_run_start(campaign=w.campaign, now=NOW)

    results = run_together(
        lambda: campaign_run_plan(run=run.pk, now=NOW, batch_size=7),
        lambda: campaign_run_plan(run=run.pk, now=NOW, batch_size=5),
    )

    assert not [r for r in results if isinstance(r, Exception)], results
    run.refresh_from_db()
    assert run.status == RunStatus.PLANNED
    assert (run.processed, run.planned, run.excluded) == (60, 60, {})
    per_client = Counter(Message.objects.values_list("client_id", flat=True))
    assert len(per_client) == 60 and set(per_client.values()) == {1}


def test_two_campaigns_planned_at_once_keep_the_caps(postgres: None) -> None:
    # Policy: one marketing message per client per week, whatever the channel.
    ContactPolicy.objects.create(name="one a week", is_active=True, total_limit=1, min_gap_hours=0)
    w = make_world(40)
    second = Campaign.objects.create(
        name="plain",
        segment=w.segment,
        channels=["email", "sms"],
        sms_text="Привет!",
        email_body="<p>Привет!</p>",
        email_subject="Привет",
    )
    runs = [campaign_run_start(campaign=c, now=NOW) for c in (w.campaign, second)]

    results = run_together(
        *[lambda r=r: campaign_run_plan(run=r.pk, now=NOW, batch_size=6) for r in runs]
    )

    assert not [r for r in results if isinstance(r, Exception)], results
    per_client = Counter(
        Message.objects.filter(status=MessageStatus.PLANNED).values_list("client_id", flat=True)
    )
    assert len(per_client) == 40 and set(per_client.values()) == {1}
    planned = CampaignRun.objects.filter(pk__in=[r.pk for r in runs])
    assert sum(r.planned for r in planned) == 40
    assert sum(r.excluded.get("total_cap", 0) for r in planned) == 40


class SlowBackend(locmem.LocmemBackend):
    """Locmem that signals when a send starts and lingers in it (the gateway is slow)."""

    started = threading.Event()

    def send_messages(self, messages: Any) -> Any:
        SlowBackend.started.set()
        time.sleep(0.5)
        return super().send_messages(messages)


def test_a_consent_withdrawn_during_dispatch_is_never_followed_by_a_send(
    postgres: None, settings: Any
) -> None:
    settings.SMS_BACKEND = f"{__name__}.SlowBackend"
    SlowBackend.started.clear()
    w = make_world(6, channels=(Channel.SMS,))
    w.campaign.channels = ["sms"]
    w.campaign.save()
    campaign_run_plan(run=campaign_run_start(campaign=w.campaign, now=NOW), now=NOW)
    first_chunk, last_chunk = w.clients[0], w.clients[-1]
    withdrawn_at: dict[int, float] = {}

    def withdraw_during_send(client: Any) -> None:
        assert SlowBackend.started.wait(10)
        withdraw(client, Channel.SMS)
        withdrawn_at[client.pk] = time.monotonic()

    results = run_together(
        lambda: dispatch_due(now=NOW, chunk_size=3),
        lambda: withdraw_during_send(first_chunk),
        lambda: withdraw_during_send(last_chunk),
    )

    assert not [r for r in results if isinstance(r, Exception)], results
    # The client of the chunk being sent waited for it: their message went out before the
    # withdrawal took effect. The other client's message, not yet sent, was cancelled.
    status = dict(Message.objects.values_list("client_id", "status"))
    assert status[first_chunk.pk] == MessageStatus.SENT
    assert status[last_chunk.pk] == MessageStatus.CANCELLED
    sent_to = [m.to for m in locmem.outbox]
    assert last_chunk.phone.as_e164 not in sent_to
    assert len(sent_to) == 5


class SlowVoiceBackend(locmem.LocmemBackend):
    """Locmem for calls that lingers in the send, so two dispatchers overlap."""

    def send_messages(self, messages: Any) -> Any:
        time.sleep(0.5)
        return super().send_messages(messages)


def test_two_dispatchers_never_both_take_a_numbers_last_call(postgres: None, settings: Any) -> None:
    # Given a daily cap of one call per number and two first attempts for the same number
    # (two campaigns), each claimed by its own dispatcher
    settings.VOICE_BACKEND = f"{__name__}.SlowVoiceBackend"
    settings.VOICE_DAILY_CAP = 1
    calls_all_day_policy()
    client = make_world(1, channels=(Channel.CALL,)).clients[0]
    # Real time: a dispatcher settles claims whose lease ran out by the clock, so a claim made
    # "at" NOW would look stale to the other one at once.
    now = timezone.now()
    Message.objects.bulk_create(
        [
            Message(
                client=client,
                channel=Channel.CALL,
                recipient=client.phone.as_e164,
                text="Скидка для вас",
                scheduled_for=now - dt.timedelta(minutes=1),
                idempotency_key=f"run:{run}:{client.pk}:call",
            )
            for run in (1, 2)
        ]
    )

    # When both dispatch at once
    results = run_together(
        *[lambda: dispatch_due(channels=[Channel.CALL], now=now, chunk_size=1, max_messages=1)] * 2
    )

    # Then one call is placed and the other waits for tomorrow: the second dispatcher waited
    # for the first one's decision instead of reading the same "one call left"
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sorted(r.counts["sent"] for r in results) == [0, 1]
    assert len(locmem.outbox) == 1
    waiting = Message.objects.get(status=MessageStatus.PLANNED)
    assert waiting.scheduled_for == now + dt.timedelta(hours=24)


# A worker killed mid-dispatch -------------------------------------------------------------------


def _worker_env(journal: Path, broker_dir: Path) -> dict[str, str]:
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "crm.settings",
        "DATABASE_URL": (
            f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        ),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_BROKER_DIR": str(broker_dir),
        "SMS_BACKEND": "messaging.backends.file.FileBackend",
        "SMS_BACKEND_OPTIONS": json.dumps({"path": str(journal), "delay": 0.02}),
        "MESSAGING_CLAIM_SECONDS": "2",
        "MESSAGING_DISPATCH_CHUNK": "20",
    }
    env.pop("CELERY_TASK_ALWAYS_EAGER", None)
    return env


def _start_worker(env: dict[str, str], queue: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "crm",
            "worker",
            "--pool=solo",
            "-Q",
            queue,
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "--loglevel=INFO",
        ],
        env=env,
        cwd=settings.BASE_DIR,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def _journal_keys(journal: Path) -> list[str]:
    if not journal.exists():
        return []
    return [json.loads(line)["key"] for line in journal.read_text().splitlines() if line]


def _wait(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_a_worker_killed_mid_dispatch_sends_every_message_exactly_once(
    postgres: None, celery_broker: str, tmp_path: Path
) -> None:
    from messaging.tasks.dispatch import dispatch_messages

    if celery_broker.startswith("filesystem://"):
        pytest.skip("a worker in another process needs a broker both reach (Redis, AMQP)")
    # Quiet hours would make this test depend on the clock: an always-open window.
    policy = ContactPolicy.objects.create(name="always", is_active=True, min_gap_hours=0)
    ChannelRule.objects.create(
        policy=policy,
        channel="sms",
        weekday_start=dt.time(0, 0),
        weekday_end=dt.time(23, 59, 59),
        weekend_start=dt.time(0, 0),
        weekend_end=dt.time(23, 59, 59),
    )
    w = make_world(80, channels=(Channel.SMS,))
    w.campaign.channels = ["sms"]
    w.campaign.save()
    now = timezone.now()
    w.offer.starts_at, w.offer.ends_at = now - dt.timedelta(days=1), now + dt.timedelta(days=7)
    w.offer.save()
    campaign_run_plan(run=campaign_run_start(campaign=w.campaign, now=now), now=now)
    assert Message.objects.filter(status=MessageStatus.PLANNED).count() == 80

    journal, log = tmp_path / "sms.jsonl", tmp_path / "worker.log"
    broker_dir = tmp_path / "broker"
    for sub in ("queue", "processed", "control"):
        (broker_dir / sub).mkdir(parents=True)
    env = _worker_env(journal, broker_dir)
    queue = f"lichno-test-{uuid.uuid4().hex[:8]}"
    from crm.celery import app

    worker = _start_worker(env, queue, log)
    try:
        dispatch_messages.apply_async(queue=queue)
        assert _wait(lambda: len(_journal_keys(journal)) >= 30, 60), log.read_text()[-3000:]
        worker.send_signal(signal.SIGKILL)  # mid-chunk: some sends not yet recorded
        worker.wait(10)
        assert Message.objects.filter(status=MessageStatus.QUEUED).exists()

        worker = _start_worker(env, queue, log)

        last_kick = [0.0]

        def all_settled() -> bool:
            if not Message.objects.filter(status__in=["planned", "queued"]).exists():
                return True
            if time.monotonic() - last_kick[0] > 2:  # what beat does every minute
                dispatch_messages.apply_async(queue=queue)
                last_kick[0] = time.monotonic()
            return False

        assert _wait(all_settled, 90), log.read_text()[-3000:]
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        app.close()

    keys = _journal_keys(journal)
    assert len(keys) == 80 and len(set(keys)) == 80  # every message reached the gateway once
    messages = Message.objects.all()
    assert {m.status for m in messages} == {MessageStatus.SENT}
    assert {m.idempotency_key for m in messages} == set(keys)
