"""Property tests over random policies, time zones, consents and histories.

Whatever the policy and the history: no message is planned or sent outside the channel's local
hours, no cap or gap is exceeded by what is planned, and nothing goes out without consent.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm.models import Channel, Consent, ConsentPurpose
from messaging.models import COUNTED_STATUSES, ChannelRule, ContactPolicy, Message, MessageStatus
from messaging.services.dispatch import dispatch_due
from messaging.services.planning import Candidate, Origin, plan_batch
from messaging.services.policy import Policy, active_policy
from tests.factories import ClientFactory
from tests.messaging.conftest import MSK, grant, withdraw

ZONES = [
    "Europe/Kaliningrad",
    "Europe/Moscow",
    "Asia/Yekaterinburg",
    "Asia/Novosibirsk",
    "Asia/Vladivostok",
    "Asia/Kamchatka",
]
CHANNELS = [Channel.SMS, Channel.EMAIL]
BASE = dt.datetime(2026, 3, 2, 0, 0, tzinfo=MSK)  # a Monday


@st.composite
def rules(draw: Any) -> dict[str, Any]:
    def hours() -> tuple[dt.time, dt.time]:
        start = draw(st.integers(0, 12))
        end = draw(st.integers(start + 1, 23))
        return dt.time(start), dt.time(end)

    (wd_start, wd_end), (we_start, we_end) = hours(), hours()
    return {
        "limit": draw(st.integers(1, 3)),
        "window_days": draw(st.integers(1, 7)),
        "weekday_start": wd_start,
        "weekday_end": wd_end,
        "weekend_start": we_start,
        "weekend_end": we_end,
    }


@st.composite
def policies(draw: Any) -> dict[str, Any]:
    return {
        "total_limit": draw(st.integers(1, 4)),
        "total_window_days": draw(st.integers(1, 7)),
        "min_gap_hours": draw(st.integers(0, 36)),
        "rules": {Channel.SMS: draw(rules()), Channel.EMAIL: draw(rules())},
    }


clients_st = st.lists(
    st.tuples(
        st.sampled_from(ZONES),
        st.sets(st.sampled_from(CHANNELS)),  # consents granted
        st.lists(  # history: (hours from BASE, channel)
            st.tuples(st.integers(-200, 200), st.sampled_from(CHANNELS)), max_size=3
        ),
    ),
    min_size=1,
    max_size=4,
)
runs_st = st.lists(
    st.tuples(st.integers(0, 24 * 9), st.permutations(CHANNELS)), min_size=1, max_size=4
)


def _local_ok(policy: Policy, channel: str, at: dt.datetime, zone: str) -> bool:
    local = at.astimezone(ZoneInfo(zone))
    start, end = policy.channels[channel].hours(local.date())
    return start <= local.time() < end


@pytest.mark.django_db
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(policy=policies(), people=clients_st, runs=runs_st, withdrawals=st.lists(st.booleans()))
def test_planning_and_dispatch_respect_hours_caps_and_consent(
    policy: dict[str, Any], people: Any, runs: Any, withdrawals: list[bool]
) -> None:
    with transaction.atomic():
        _check(_active(policy), people, runs, withdrawals)
        transaction.set_rollback(True)


def _active(spec: dict[str, Any]) -> Policy:
    """The random policy made the active one, as dispatch reads it too."""
    model = ContactPolicy.objects.create(
        name="random",
        is_active=True,
        total_limit=spec["total_limit"],
        total_window_days=spec["total_window_days"],
        min_gap_hours=spec["min_gap_hours"],
        learn_preferred_time=False,
    )
    for channel, rule in spec["rules"].items():
        ChannelRule.objects.create(policy=model, channel=channel, **rule)
    return active_policy()


def _granted() -> set[tuple[int, str]]:
    return set(
        Consent.objects.filter(is_granted=True, purpose=ConsentPurpose.MARKETING).values_list(
            "client_id", "channel"
        )
    )


def _check(policy: Policy, people: Any, runs: Any, withdrawals: list[bool]) -> None:
    clients = []
    for zone, consents, history in people:
        client = ClientFactory(time_zone=zone)
        clients.append(client)
        if consents:
            grant([client], *consents, at=BASE)
        for i, (hours, channel) in enumerate(history):
            Message.objects.create(
                client=client,
                channel=channel,
                recipient="x",
                text="old",
                scheduled_for=BASE + dt.timedelta(hours=hours),
                status=MessageStatus.SENT,
                idempotency_key=f"history:{client.pk}:{i}",
            )
    existing = set(Message.objects.values_list("pk", flat=True))
    zone_of = {c.pk: str(c.time_zone) for c in clients}

    for n, (hours, order) in enumerate(runs):
        now = BASE + dt.timedelta(hours=hours)
        candidates = [
            Candidate(client_id=c.pk, texts={ch: ("s", f"hello {n}") for ch in CHANNELS})
            for c in clients
        ]
        origin = Origin(channels=list(order), key_prefix=f"run{n}")
        plan_batch(origin=origin, candidates=candidates, policy=policy, now=now)

    planned = list(Message.objects.exclude(pk__in=existing))
    counted = list(Message.objects.filter(status__in=COUNTED_STATUSES))
    granted = _granted()
    for m in planned:
        # consent at planning, local hours
        assert (m.client_id, m.channel) in granted
        assert _local_ok(policy, m.channel, m.scheduled_for, zone_of[m.client_id])
        mine = [o for o in counted if o.client_id == m.client_id]
        # gap: no other message closer than the minimum gap
        assert all(
            o.pk == m.pk or abs(o.scheduled_for - m.scheduled_for) >= policy.min_gap for o in mine
        )
        # caps: every window of length W that starts at a message and holds m is within limit
        for o in mine:
            for length, limit, same_channel in (
                (policy.total_window, policy.total_limit, False),
                (policy.channels[m.channel].window, policy.channels[m.channel].limit, True),
            ):
                lo = o.scheduled_for
                if not (lo <= m.scheduled_for < lo + length):
                    continue
                inside = [
                    x
                    for x in mine
                    if lo <= x.scheduled_for < lo + length
                    and (not same_channel or x.channel == m.channel)
                ]
                new_inside = [x for x in inside if x.pk not in existing]
                if new_inside:
                    assert len(inside) <= limit, (length, limit, inside)

    # Withdraw some consents, then dispatch at each planned time: nothing without consent,
    # nothing outside the local hours.
    for client, drop in zip(clients, withdrawals, strict=False):
        if drop:
            for channel in CHANNELS:
                withdraw(client, channel, at=BASE)
    granted_now = _granted()
    for at in sorted({m.scheduled_for for m in planned}):
        dispatch_due(now=at)
    for m in Message.objects.filter(pk__in=[p.pk for p in planned]):
        if m.status == MessageStatus.SENT:
            assert (m.client_id, m.channel) in granted_now
            assert m.sent_at is not None
            assert _local_ok(policy, m.channel, m.sent_at, zone_of[m.client_id])
        else:
            assert m.status in (MessageStatus.CANCELLED, MessageStatus.PLANNED)
