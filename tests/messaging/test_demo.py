"""The messaging demo over the demo data: idempotent, and its campaigns really plan messages."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from messaging.demo import AUTODIAL_CAMPAIGN, OFFER_CAMPAIGN, PLAIN_CAMPAIGN
from messaging.models import (
    Campaign,
    ChannelRule,
    ContactPolicy,
    Message,
    RunStatus,
    TriggerKind,
    TriggerScenario,
)
from messaging.services.admin_ops import campaign_check, scenario_check
from messaging.services.campaigns import campaign_run_plan, campaign_run_start

pytestmark = pytest.mark.django_db


def quiet(command: str, **options: object) -> str:
    out = io.StringIO()
    call_command(command, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


@pytest.fixture
def demo() -> None:
    quiet("seed_demo", clients=300, seed=3, flush=True)
    quiet("offers_demo", codes=50)


def test_demo_needs_the_demo_offers() -> None:
    with pytest.raises(CommandError, match="offers_demo"):
        quiet("messaging_demo")


def test_demo_is_idempotent_and_consistent(demo: None) -> None:
    quiet("messaging_demo")
    ContactPolicy.objects.update(name="Стандартная политика")  # no-op edit, then again
    output = quiet("messaging_demo")

    assert "Стандартная политика (active)" in output
    policy = ContactPolicy.objects.get()
    assert policy.is_active and (policy.total_limit, policy.total_window_days) == (3, 7)
    rules = {r.channel: r for r in ChannelRule.objects.filter(policy=policy)}
    assert (rules["sms"].limit, rules["sms"].weekday_start.hour, rules["sms"].weekday_end.hour) == (
        2,
        9,
        21,
    )
    assert (rules["call"].limit, rules["call"].weekday_start.hour) == (1, 10)
    assert Campaign.objects.count() == 3
    scenarios = {s.kind: s for s in TriggerScenario.objects.all()}
    assert set(scenarios) == set(TriggerKind.values)
    assert {k for k, s in scenarios.items() if s.is_active} == {
        TriggerKind.ABANDONED_CART,
        TriggerKind.BIRTHDAY,
    }
    # Everything the demo made passes the admin's own checks.
    for campaign in Campaign.objects.all():
        assert campaign_check(campaign) == {}, campaign.name
    for scenario in scenarios.values():
        assert scenario_check(scenario) == {}, scenario.name


@pytest.mark.parametrize("name", [OFFER_CAMPAIGN, PLAIN_CAMPAIGN, AUTODIAL_CAMPAIGN])
def test_a_run_of_a_demo_campaign_plans_messages(demo: None, name: str) -> None:
    quiet("messaging_demo")
    campaign = Campaign.objects.get(name=name)
    now = timezone.now()

    run = campaign_run_plan(run=campaign_run_start(campaign=campaign, now=now), now=now)

    assert run.status == RunStatus.PLANNED
    assert run.audience > 0 and run.processed == run.audience
    assert run.planned > 0
    assert run.planned + run.control + sum(run.excluded.values()) == run.audience
    messages = Message.objects.filter(run=run)
    assert messages.exclude(status="control").count() == run.planned
    assert all(m.text and m.recipient for m in messages.exclude(status="control")[:50])
