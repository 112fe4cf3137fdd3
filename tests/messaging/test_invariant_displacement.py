"""Invariants 1 and 3 where a higher trigger scenario displaces a lower one's message.

An evaluation reads the client's trigger messages of the priority window, then cancels the
lower ones still only planned (``messaging.services.triggers._displace``) before it plans the
higher one. Between the read and the cancellation another connection may change such a message:
dispatch claims it, or a withdrawal cancels it. The cancellation must take only what is still
planned then, or a message on its way stops counting against the caps (and both go out), and a
message cancelled for a withdrawn consent is planned again when the higher one cannot be.

PostgreSQL: the other connection commits while the evaluation's transaction is open.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.db.models import Q

from crm.models import Channel, Client, Event, EventType, Product
from messaging.backends import locmem
from messaging.models import (
    COUNTED_STATUSES,
    PENDING_STATUSES,
    ChannelRule,
    ContactPolicy,
    FiringStatus,
    Message,
    MessageStatus,
    TriggerFiring,
    TriggerKind,
    TriggerScenario,
)
from messaging.services import triggers
from messaging.services.dispatch import _claim, _send_chunk
from messaging.services.policy import active_policy
from messaging.services.triggers import triggers_evaluate
from tests.concurrency import run_together
from tests.messaging.conftest import NOW, World, make_world, withdraw

pytestmark = pytest.mark.django_db(transaction=True)

HOUR = dt.timedelta(hours=1)
LATER = NOW + dt.timedelta(minutes=10)  # the higher scenario's evaluation, and dispatch
_names = itertools.count()


def one_hour_gap_policy() -> None:
    """Two marketing messages to a client at least an hour apart; no other cap in the way."""
    policy = ContactPolicy.objects.create(
        name="an hour apart", is_active=True, total_limit=20, min_gap_hours=1
    )
    for channel in Channel.values:
        ChannelRule.objects.create(policy=policy, channel=channel, limit=20)


def scenario(kind: str, priority: int, delay_hours: int) -> TriggerScenario:
    return TriggerScenario.objects.create(
        name=f"{kind} {next(_names)}",
        kind=kind,
        channels=["sms"],
        priority=priority,
        delay_hours=delay_hours,
        days=7,
        sms_text="{{ client.first_name }}, {{ product.name }} ждёт вас",
        is_active=True,
    )


def cart_message_due_now(world: World) -> tuple[Client, TriggerScenario, Message]:
    """The client's abandoned-cart message, planned for 12:00 and not dispatched yet; the cart
    recorded a price above today's, so a price-drop scenario can fire too."""
    client = world.clients[0]
    cart = scenario(TriggerKind.ABANDONED_CART, priority=50, delay_hours=2)
    Event.objects.create(
        client=client,
        type=EventType.CART_ADD,
        occurred_at=NOW - 3 * HOUR,
        product=world.product,
        payload={"price": "950"},
    )
    triggers_evaluate(now=NOW, scenarios=[cart])
    waiting = Message.objects.get(client=client)
    assert (waiting.status, waiting.scheduled_for) == (MessageStatus.PLANNED, NOW)
    Product.objects.filter(pk=world.product.pk).update(price=Decimal("700"))
    return client, cart, waiting


def between_window_and_displacement(
    monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[], Any]
) -> list[set[int]]:
    """Run ``meanwhile`` on another connection, committed, once the evaluation has read the
    priority window and before it cancels what gives way; returns, per call, the ids of the
    messages the evaluation meant to cancel."""
    real = triggers._displace
    meant: list[set[int]] = []

    def displace(displaced: dict[int, list[Any]]) -> dict[int, list[Any]]:
        meant.append({r.message_id for lower in displaced.values() for r in lower})
        (outcome,) = run_together(meanwhile)
        if isinstance(outcome, Exception):
            raise outcome
        return real(displaced)

    monkeypatch.setattr(triggers, "_displace", displace)
    return meant


def firing_of(s: TriggerScenario, client: Client) -> tuple[str, str]:
    firing = TriggerFiring.objects.get(scenario=s, client=client)
    return firing.status, firing.reason


def test_a_lower_message_dispatch_claims_meanwhile_still_counts_against_the_gap(
    postgres: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a client whose cart message is due at 12:00, and a price drop 10 minutes later
    one_hour_gap_policy()
    world = make_world(1, channels=(Channel.SMS,))
    client, cart, waiting = cart_message_due_now(world)
    top = scenario(TriggerKind.PRICE_DROP, priority=90, delay_hours=0)
    claimed: list[Message] = []
    meant = between_window_and_displacement(
        monkeypatch, lambda: claimed.extend(_claim(channels=None, now=LATER, limit=10))
    )

    # When dispatch claims the cart message while the price drop is being evaluated, and then
    # sends it
    result = triggers_evaluate(now=LATER, scenarios=[top])
    _send_chunk(claimed, policy=active_policy(), now=LATER, backends={})

    # Then the evaluation meant to cancel it, but left the claimed message alone, and it kept
    # the price drop an hour away: one SMS went, nothing else is planned
    assert meant == [{waiting.pk}]
    assert [m.pk for m in claimed] == [waiting.pk]
    assert Message.objects.get(pk=waiting.pk).status == MessageStatus.SENT
    assert [m.to for m in locmem.outbox] == [client.phone.as_e164]
    counted = Message.objects.filter(client=client, status__in=COUNTED_STATUSES)
    assert list(counted.values_list("pk", flat=True)) == [waiting.pk]
    assert firing_of(cart, client) == (FiringStatus.PLANNED, "")
    assert firing_of(top, client) == (FiringStatus.SUPPRESSED, "min_gap")
    assert result.outranked == 0


def test_a_lower_message_a_withdrawal_cancels_meanwhile_is_not_planned_again(
    postgres: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a client whose cart message is due at 12:00, and a price drop 10 minutes later
    one_hour_gap_policy()
    world = make_world(1, channels=(Channel.SMS,))
    client, cart, waiting = cart_message_due_now(world)
    top = scenario(TriggerKind.PRICE_DROP, priority=90, delay_hours=0)
    meant = between_window_and_displacement(monkeypatch, lambda: withdraw(client, Channel.SMS))

    # When the client withdraws SMS consent while the price drop is being evaluated
    result = triggers_evaluate(now=LATER, scenarios=[top])

    # Then the price drop cannot be planned, and the cart message stays cancelled for the
    # withdrawal: nothing is waiting to go to the client
    assert meant == [{waiting.pk}]
    kept = Message.objects.get(pk=waiting.pk)
    assert (kept.status, kept.status_reason) == (MessageStatus.CANCELLED, "consent withdrawn")
    assert not Message.objects.filter(Q(client=client), Q(status__in=PENDING_STATUSES)).exists()
    assert firing_of(top, client) == (FiringStatus.SUPPRESSED, "no_consent")
    assert result.outranked == 0
