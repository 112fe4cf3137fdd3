"""Invariant 9 under concurrency: anonymizing a client while a planner writes its messages.

A campaign planner holds its batch of clients locked while it writes their messages (addresses,
texts with the client's name) and commits them with the batch. An anonymization of one of those
clients must wait for that commit, so that the withdrawal of consents and the blanking of
messages see the new messages too; otherwise they miss them, and the client, anonymized, keeps
a message planned to their number with their name in it.

PostgreSQL: the planner and the anonymization run on connections of their own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, connections

from crm import privacy
from crm.models import Channel, Client
from messaging.models import Campaign, CampaignRun, Message, MessageStatus, RunStatus
from messaging.services import campaigns
from messaging.services.campaigns import campaign_run_plan
from tests.messaging.conftest import NOW, make_world

pytestmark = pytest.mark.django_db(transaction=True)


def start(work: Callable[[], Any], errors: list[BaseException]) -> threading.Thread:
    """``work`` in a thread with a connection of its own; what it raises lands in ``errors``."""

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def waiting_for_a_lock(timeout: float = 10.0) -> bool:
    """Whether another connection to the test database is waiting for a row lock (polled)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
            )
            (waiting,) = cursor.fetchone()
        if waiting:
            return True
        time.sleep(0.05)
    return False


def test_a_client_anonymized_while_a_planner_writes_their_message_keeps_no_personal_data(
    postgres: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given three consented clients, and a campaign SMS that names each of them
    world = make_world(3, channels=(Channel.SMS,))
    gone, *others = world.clients
    campaign = Campaign.objects.create(
        name="plain",
        segment=world.segment,
        channels=["sms"],
        sms_text="{{ client.first_name }}, заходите за новинками!",
    )
    run = CampaignRun.objects.create(campaign=campaign, started_at=NOW)
    # ... and a planner that stops, its batch written but not committed, until released
    written, release = threading.Event(), threading.Event()
    real = campaigns.plan_batch

    def plan_batch_then_wait(**kwargs: Any) -> Any:
        outcome = real(**kwargs)
        written.set()
        release.wait(timeout=30)
        return outcome

    monkeypatch.setattr(campaigns, "plan_batch", plan_batch_then_wait)
    errors: list[BaseException] = []
    planner = start(lambda: campaign_run_plan(run=run.pk, now=NOW, batch_size=50), errors)
    assert written.wait(timeout=30)

    # When the first client is anonymized meanwhile
    anonymizer = start(
        lambda: privacy.client_anonymize_many(client_ids=[gone.pk], actor_label="request"),
        errors,
    )
    blocked = waiting_for_a_lock()
    release.set()
    for thread in (planner, anonymizer):
        thread.join(timeout=60)

    # Then the anonymization waited for the planner, and found and scrubbed its message: no
    # number, no name, nothing left to send
    assert blocked
    assert not errors, errors
    assert not planner.is_alive() and not anonymizer.is_alive()
    run.refresh_from_db()
    assert (run.status, run.planned) == (RunStatus.PLANNED, 3)
    assert Client.objects.get(pk=gone.pk).is_anonymized
    scrubbed = Message.objects.get(client=gone)
    assert (scrubbed.recipient, scrubbed.text, scrubbed.status, scrubbed.status_reason) == (
        "",
        "",
        MessageStatus.CANCELLED,
        "consent withdrawn",
    )
    # ... and the others' messages are untouched
    for client in others:
        kept = Message.objects.get(client=client)
        assert kept.status == MessageStatus.PLANNED
        assert kept.recipient == client.phone.as_e164
        assert kept.text.startswith(f"{client.first_name}, ")
