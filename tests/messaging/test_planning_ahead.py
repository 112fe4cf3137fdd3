"""Offer campaigns propose the coming batches ahead (``offers.engine.propose_batches``) while
the planner writes the current one: on PostgreSQL the run plans exactly what it plans batch by
batch."""

from __future__ import annotations

import datetime as dt

import pytest

from messaging.models import Message
from messaging.services import campaigns
from messaging.services.campaigns import campaign_run_plan, campaign_run_start
from offers import engine
from tests.messaging.conftest import NOW, make_world

pytestmark = [pytest.mark.usefixtures("postgres"), pytest.mark.django_db(transaction=True)]


def _plan(
    parallel: int, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[str, str, dt.datetime, str]]:
    monkeypatch.setattr(engine, "PARALLEL_BATCHES", parallel)
    world = make_world(n=11)
    run = campaign_run_plan(
        run=campaign_run_start(campaign=world.campaign, now=NOW), now=NOW, batch_size=3
    )
    assert (run.status, run.processed, run.planned) == ("planned", 11, 11)
    rows = [
        # Each world has new clients: their names are the only difference allowed
        (channel, text.replace(name, "{name}"), when, variant)
        for name, channel, text, when, variant in Message.objects.filter(run=run)
        .order_by("client_id")
        .values_list("client__first_name", "channel", "text", "scheduled_for", "variant__name")
    ]
    Message.objects.all().delete()
    return rows


def test_proposing_ahead_plans_what_batch_by_batch_plans(monkeypatch: pytest.MonkeyPatch) -> None:
    used: list[bool] = []
    real = campaigns._CandidateBuilder._proposed_ahead

    def spy(self: campaigns._CandidateBuilder, ids: list[int]) -> object:
        found = real(self, ids)
        used.append(found is not None)
        return found

    monkeypatch.setattr(campaigns._CandidateBuilder, "_proposed_ahead", spy)
    ahead = _plan(2, monkeypatch)
    assert used == [True, True, True, True]  # every batch came from the threads
    used.clear()
    one_by_one = _plan(1, monkeypatch)
    assert used == [False, False, False, False]
    assert ahead == one_by_one
    assert len(ahead) == 11 and all("{name}" in text for _, text, _, _ in ahead)
