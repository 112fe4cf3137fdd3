"""Trigger scenarios: who fires, when, how often, and what is planned for them."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
from collections import Counter
from decimal import Decimal
from typing import Any, cast
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from crm.models import Channel, Client, Event, EventType, Product
from messaging.models import (
    ChannelRule,
    ContactPolicy,
    FiringStatus,
    Message,
    MessageStatus,
    TriggerFiring,
    TriggerKind,
    TriggerScenario,
)
from messaging.schedules import SCHEDULES
from messaging.services.triggers import _FINDERS, TriggerResult, _Run, triggers_evaluate
from offers.engine import propose
from offers.models import CrossSellRule
from segments.services import segment_add_clients
from tests.factories import (
    CategoryFactory,
    ClientFactory,
    OfferFactory,
    OfferVariantFactory,
    ProductFactory,
    PurchaseFactory,
    PurchaseItemFactory,
)
from tests.messaging.conftest import MSK, NOW, World, grant, make_world

pytestmark = pytest.mark.django_db
VLAD = ZoneInfo("Asia/Vladivostok")
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
_names = itertools.count()


def scenario(kind: str, **fields: Any) -> TriggerScenario:
    values: dict[str, Any] = {
        "name": f"{kind} {next(_names)}",
        "kind": kind,
        "channels": ["sms"],
        "delay_hours": 2,
        "days": 7,
        "sms_text": "{{ client.first_name }}, {{ product.name }} ждёт вас",
        "is_active": True,
    }
    values.update(fields)
    return TriggerScenario.objects.create(**values)


def event(
    client: Client, kind: str, at: dt.datetime, product: Product | None = None, **payload: Any
) -> Event:
    return Event.objects.create(
        client=client, type=kind, occurred_at=at, product=product, payload=payload
    )


def buy(client: Client, at: dt.datetime, product: Product | None = None) -> Any:
    if product is None:
        return PurchaseFactory(client=client, purchased_at=at)
    return PurchaseItemFactory(
        purchase__client=client, purchase__purchased_at=at, product=product
    ).purchase


def fired(s: TriggerScenario) -> dict[int, tuple[str, int, str, str]]:
    return {
        f.client_id: (f.occasion, f.step, f.status, f.reason)
        for f in TriggerFiring.objects.filter(scenario=s)
    }


def loose_policy() -> None:
    """Caps out of the way, for tests about chains rather than frequency."""
    policy = ContactPolicy.objects.create(
        name="loose", is_active=True, total_limit=20, min_gap_hours=1
    )
    for channel in Channel.values:
        ChannelRule.objects.create(policy=policy, channel=channel, limit=20)


@pytest.fixture
def w(db: None) -> World:
    return make_world(6)


# The seven kinds ----------------------------------------------------------------------------------


def test_abandoned_cart_fires_after_the_delay_for_carts_not_bought_or_removed(w: World) -> None:
    a, b, c, d, e, f = w.clients
    cart = scenario(TriggerKind.ABANDONED_CART)
    first = event(a, EventType.CART_ADD, NOW - 5 * HOUR, w.product)
    latest = event(a, EventType.CART_ADD, NOW - 3 * HOUR, w.product)
    event(b, EventType.CART_ADD, NOW - HOUR, w.product)  # not yet: the delay is 2 hours
    event(c, EventType.CART_ADD, NOW - 3 * HOUR, w.product)
    buy(c, NOW - 2 * HOUR)  # bought
    event(d, EventType.CART_ADD, NOW - 3 * HOUR, w.product)
    event(d, EventType.CART_REMOVE, NOW - 2 * HOUR, w.product)  # took it out
    event(e, EventType.CART_ADD, NOW - 8 * DAY, w.product)  # too old (days=7)
    event(f, EventType.PRODUCT_VIEW, NOW - 3 * HOUR, w.product)  # a view is not a cart

    result = triggers_evaluate(now=NOW)

    assert fired(cart) == {a.pk: (f"cart:{latest.pk}", 0, FiringStatus.PLANNED, "")}
    assert first.pk != latest.pk
    message = Message.objects.get()
    assert message.firing is not None
    assert message.client_id == a.pk and message.firing.scenario_id == cart.pk
    assert message.text == f"{a.first_name}, Корм Purina One, 1,5 кг ждёт вас"
    assert message.reason == "Left “Корм Purina One, 1,5 кг” in the cart."
    assert message.scheduled_for == NOW  # due an hour ago: as soon as the quiet hours allow
    assert message.idempotency_key == f"firing:{message.firing_id}:{a.pk}:sms"
    assert result.counts(cart).as_dict() == {
        "fired": 1,
        "planned": 1,
        "suppressed": {},
        "stopped": 0,
    }


def test_browse_abandonment_leaves_out_carts_and_purchases(w: World) -> None:
    a, b, c, *_ = w.clients
    browse = scenario(TriggerKind.BROWSE_ABANDONMENT, delay_hours=1, days=2)
    view = event(a, EventType.PRODUCT_VIEW, NOW - 2 * HOUR, w.product)
    event(b, EventType.PRODUCT_VIEW, NOW - 3 * HOUR, w.product)
    event(b, EventType.CART_ADD, NOW - 2 * HOUR, w.product)
    event(c, EventType.PRODUCT_VIEW, NOW - 3 * HOUR, w.product)
    buy(c, NOW - 2 * HOUR)
    event(w.clients[3], EventType.PRODUCT_VIEW, NOW - 3 * DAY, w.product)

    triggers_evaluate(now=NOW)

    assert fired(browse) == {a.pk: (f"view:{view.pk}", 0, FiringStatus.PLANNED, "")}


def test_cross_sell_fires_days_after_a_purchase_within_the_catch_up(w: World) -> None:
    a, b, c, *_ = w.clients
    cross = scenario(TriggerKind.CROSS_SELL, days=3, delay_hours=0)
    due = buy(a, NOW - 3 * DAY - HOUR)
    buy(b, NOW - DAY)  # too early
    buy(c, NOW - 10 * DAY)  # long overdue: switching a scenario on does not replay the past

    triggers_evaluate(now=NOW)

    assert fired(cross) == {a.pk: (f"purchase:{due.pk}", 0, FiringStatus.PLANNED, "")}


def phone_cross_sell_scenario() -> tuple[TriggerScenario, Product]:
    """A cross-sell scenario driven by an offer: phone -> power bank, for purchases in 10 days."""
    phones, power_banks = CategoryFactory(name="Телефоны"), CategoryFactory(name="Аккумуляторы")
    phone = ProductFactory(name="Samsung Galaxy A55", category=phones)
    ProductFactory(name="Power bank 10000", category=power_banks)
    CrossSellRule.objects.create(source_category=phones, target_category=power_banks)
    offer = OfferFactory(
        strategy="cross_sell",
        channels=["sms"],
        recent_days=10,
        starts_at=NOW - DAY,
        ends_at=NOW + 14 * DAY,
        holdout_percent=Decimal("0"),
    )
    OfferVariantFactory(offer=offer, sms_text="К телефону: {{ product.name }}")
    return scenario(TriggerKind.CROSS_SELL, offer=offer, delay_hours=1, sms_text=""), phone


def test_cross_sell_with_an_offer_of_that_strategy_lets_the_engine_decide(w: World) -> None:
    a, b, c, *_ = w.clients
    cross, phone = phone_cross_sell_scenario()
    bought = buy(a, NOW - 2 * DAY, phone)
    buy(b, NOW - 2 * DAY)  # bought something without a rule: the engine proposes nothing
    buy(c, NOW - 30 * DAY, phone)  # too long ago for the offer's recent_days

    triggers_evaluate(now=NOW)
    triggers_evaluate(now=NOW + HOUR)

    assert fired(cross) == {a.pk: (f"purchase:{bought.pk}", 0, FiringStatus.PLANNED, "")}
    message = Message.objects.get()
    assert (message.offer_id, message.text) == (cross.offer_id, "К телефону: Power bank 10000")
    assert "Samsung Galaxy A55" in message.reason


def test_replenishment_fires_for_a_regular_product_not_bought_again(w: World) -> None:
    a, b, c, *_ = w.clients
    food = ProductFactory(name="Корм Royal Canin", price=Decimal("1500"))
    refill = scenario(
        TriggerKind.REPLENISHMENT, days=30, delay_hours=0, sms_text="Пора за {{ product.name }}"
    )
    buy(a, NOW - 60 * DAY - HOUR, food)
    last = buy(a, NOW - 30 * DAY - HOUR, food)
    buy(b, NOW - 30 * DAY - HOUR, food)  # bought once: not a regular product
    buy(c, NOW - 60 * DAY - HOUR, food)
    buy(c, NOW - 30 * DAY - HOUR, food)
    buy(c, NOW - 5 * DAY, food)  # bought it again

    triggers_evaluate(now=NOW)

    assert fired(refill) == {a.pk: (f"purchase:{last.pk}", 0, FiringStatus.PLANNED, "")}
    assert Message.objects.get().text == "Пора за Корм Royal Canin"


def test_win_back_fires_once_per_lapse_with_the_offer(w: World) -> None:
    a, b, c, *_ = w.clients
    winback = scenario(TriggerKind.WIN_BACK, days=60, offer=w.offer, sms_text="")
    last = buy(a, NOW - 61 * DAY)
    buy(b, NOW - 90 * DAY)
    buy(b, NOW - 10 * DAY)  # came back

    triggers_evaluate(now=NOW)
    triggers_evaluate(now=NOW + DAY)

    assert fired(winback) == {a.pk: (f"winback:{last.pk}", 0, FiringStatus.PLANNED, "")}
    message = Message.objects.get()
    assert message.offer_id == w.offer.pk and "Purina" in message.text
    assert message.expires_at == w.offer.ends_at
    assert c.pk not in fired(winback)  # never bought: nothing to win back


def test_price_drop_compares_the_price_the_cart_event_recorded(w: World) -> None:
    a, b, c, d, *_ = w.clients
    drop = scenario(
        TriggerKind.PRICE_DROP, delay_hours=1, sms_text="{{ product.name }}: {{ product.price }}"
    )
    cheaper = event(a, EventType.CART_ADD, NOW - DAY, w.product, price="1000.00")  # now 900
    same = event(b, EventType.CART_ADD, NOW - DAY, w.product, price="900.00")  # same price
    event(c, EventType.CART_ADD, NOW - DAY, w.product)  # no price recorded
    event(d, EventType.CART_ADD, NOW - DAY, w.product, price="1000")
    buy(d, NOW - HOUR)

    triggers_evaluate(now=NOW)
    Product.objects.filter(pk=w.product.pk).update(price=Decimal("800"))
    triggers_evaluate(now=NOW + 2 * DAY)  # cheaper again: a new occasion

    assert sorted(
        TriggerFiring.objects.filter(scenario=drop).values_list("client_id", "occasion")
    ) == [
        (a.pk, f"price:{cheaper.pk}:800.00"),
        (a.pk, f"price:{cheaper.pk}:900.00"),
        (b.pk, f"price:{same.pk}:800.00"),  # below what b saw now
    ]
    first = Message.objects.filter(client=a).order_by("scheduled_for").first()
    assert first is not None and first.scheduled_for == NOW + HOUR  # the delay from detection
    assert (
        first.reason == "“Корм Purina One, 1,5 кг” in the cart now costs 900.00 instead of 1000.00."
    )


def test_birthday_counts_days_in_the_clients_local_time() -> None:
    # 14:30 UTC on 3 March: 17:30 in Moscow, already 00:30 on 4 March in Vladivostok.
    now = dt.datetime(2026, 3, 3, 14, 30, tzinfo=dt.UTC)
    vlad = ClientFactory(time_zone="Asia/Vladivostok", birth_date=dt.date(1990, 3, 11))
    moscow = ClientFactory(time_zone="Europe/Moscow", birth_date=dt.date(1985, 3, 11))
    later = ClientFactory(time_zone="Asia/Vladivostok", birth_date=dt.date(1990, 3, 20))
    grant([vlad, moscow, later], Channel.SMS)
    birthday = scenario(TriggerKind.BIRTHDAY, days=7, delay_hours=0)

    triggers_evaluate(now=now)
    assert fired(birthday) == {vlad.pk: ("birthday:2026", 0, FiringStatus.PLANNED, "")}
    message = Message.objects.get()
    assert message.scheduled_for.astimezone(VLAD) == dt.datetime(2026, 3, 4, 9, 0, tzinfo=VLAD)

    triggers_evaluate(now=now + 7 * HOUR)  # 00:30 on 4 March in Moscow
    assert set(fired(birthday)) == {vlad.pk, moscow.pk}
    assert TriggerFiring.objects.count() == 2
    assert later.pk not in fired(birthday)


# Follow-ups, purchases, priority ------------------------------------------------------------------


def test_follow_ups_every_n_days_until_a_purchase_stops_the_chain(w: World) -> None:
    loose_policy()
    a, b, *_ = w.clients
    cart = scenario(TriggerKind.ABANDONED_CART, followup_days=1, max_followups=3, days=10)
    cart_a = event(a, EventType.CART_ADD, NOW - 3 * HOUR, w.product)
    event(b, EventType.CART_ADD, NOW - 3 * HOUR, w.product)

    triggers_evaluate(now=NOW)
    triggers_evaluate(now=NOW + DAY)
    buy(b, NOW + DAY + HOUR)
    triggers_evaluate(now=NOW + 2 * DAY)
    triggers_evaluate(now=NOW + 3 * DAY)
    triggers_evaluate(now=NOW + 4 * DAY)  # a: no more than three follow-ups

    steps = Counter(TriggerFiring.objects.filter(scenario=cart).values_list("client_id", "step"))
    assert sorted(s for c, s in steps if c == a.pk) == [0, 1, 2, 3]
    assert sorted(s for c, s in steps if c == b.pk) == [0, 1]
    assert TriggerFiring.objects.get(client=b, step=1).status == FiringStatus.STOPPED
    assert set(TriggerFiring.objects.filter(client=a).values_list("occasion", flat=True)) == {
        f"cart:{cart_a.pk}"
    }
    times = list(
        Message.objects.filter(client=a)
        .order_by("scheduled_for")
        .values_list("scheduled_for", flat=True)
    )
    assert times == [NOW, NOW + DAY, NOW + 2 * DAY, NOW + 3 * DAY]


def test_a_purchase_cancels_the_planned_follow_up(w: World) -> None:
    loose_policy()
    a, b, *_ = w.clients
    cart = scenario(TriggerKind.ABANDONED_CART, followup_days=1, max_followups=2, days=10)
    evening = NOW.replace(hour=23)  # the messages wait for the morning
    for client in (a, b):
        event(client, EventType.CART_ADD, evening - 3 * HOUR, w.product)
    triggers_evaluate(now=evening)
    waiting = Message.objects.get(client=a)
    assert waiting.status == MessageStatus.PLANNED
    assert waiting.scheduled_for == dt.datetime(2026, 3, 5, 9, 0, tzinfo=MSK)

    buy(a, evening + 0.5 * HOUR)
    result = triggers_evaluate(now=evening + HOUR)
    triggers_evaluate(now=evening + DAY + HOUR)

    waiting.refresh_from_db()
    assert (waiting.status, waiting.status_reason) == (MessageStatus.CANCELLED, "purchased")
    assert result.cancelled == 1 and result.counts(cart).stopped == 1
    assert fired(cart)[a.pk][2:] == (FiringStatus.STOPPED, "purchased")
    assert not TriggerFiring.objects.filter(client=a, step=1).exists()
    assert Message.objects.get(client=b, firing__step=0).status == MessageStatus.PLANNED
    assert TriggerFiring.objects.filter(client=b, step=1).exists()


def test_only_the_highest_priority_scenario_speaks(w: World) -> None:
    a, b, *_ = w.clients
    cart = scenario(TriggerKind.ABANDONED_CART, priority=80)
    browse = scenario(TriggerKind.BROWSE_ABANDONMENT, priority=30, delay_hours=1)
    event(a, EventType.PRODUCT_VIEW, NOW - 4 * HOUR, w.product)
    event(a, EventType.PRODUCT_VIEW, NOW - 3 * HOUR, w.product)
    event(b, EventType.PRODUCT_VIEW, NOW - 5 * HOUR, w.product)
    event(b, EventType.CART_ADD, NOW - 3 * HOUR, w.product)  # b: a cart and, earlier, a view
    event(w.clients[2], EventType.PRODUCT_VIEW, NOW - 3 * HOUR, w.product)
    event(w.clients[2], EventType.CART_ADD, NOW - 4 * HOUR, ProductFactory())

    result = triggers_evaluate(now=NOW)

    # clients[2] viewed after carting, so both scenarios fire for it: the cart wins.
    assert fired(cart)[w.clients[2].pk][2] == FiringStatus.PLANNED
    assert fired(browse)[w.clients[2].pk][2:] == (FiringStatus.SUPPRESSED, "lower_priority")
    assert fired(browse)[a.pk][2] == FiringStatus.PLANNED
    assert b.pk not in fired(browse)  # carted after viewing: the cart scenario's business
    assert result.counts(browse).suppressed == Counter({"lower_priority": 1})
    firing = Message.objects.filter(client=w.clients[2]).get().firing
    assert firing is not None
    assert firing.scenario_id == cart.pk


def test_a_recent_trigger_message_outranks_lower_scenarios_within_the_window(w: World) -> None:
    loose_policy()
    a = w.clients[0]
    high = scenario(TriggerKind.ABANDONED_CART, priority=80)
    low = scenario(TriggerKind.BROWSE_ABANDONMENT, priority=30, delay_hours=1)
    top = scenario(TriggerKind.PRICE_DROP, priority=90, delay_hours=0)
    event(a, EventType.CART_ADD, NOW - 3 * HOUR, w.product, price="950")
    triggers_evaluate(now=NOW, scenarios=[high])
    event(a, EventType.PRODUCT_VIEW, NOW + HOUR, ProductFactory())

    triggers_evaluate(now=NOW + 3 * HOUR, scenarios=[low, top])

    assert fired(low)[a.pk][2:] == (FiringStatus.SUPPRESSED, "lower_priority")
    assert fired(top)[a.pk][2] == FiringStatus.PLANNED
    assert Message.objects.filter(client=a).count() == 2

    triggers_evaluate(now=NOW + 3 * DAY, scenarios=[low])  # outside the window: another view
    event(a, EventType.PRODUCT_VIEW, NOW + 3 * DAY, ProductFactory())
    triggers_evaluate(now=NOW + 3 * DAY + 2 * HOUR, scenarios=[low])
    assert list(
        TriggerFiring.objects.filter(scenario=low).order_by("id").values_list("status", flat=True)
    ) == [FiringStatus.SUPPRESSED, FiringStatus.PLANNED]


def _cart_message_planned_for_tomorrow(w: World) -> tuple[Client, TriggerScenario, Message]:
    """A cart message that waits for the morning (evaluated at 23:00), the client's only one."""
    a = w.clients[0]
    cart = scenario(TriggerKind.ABANDONED_CART, priority=50)
    evening = NOW.replace(hour=23)
    event(a, EventType.CART_ADD, evening - 3 * HOUR, w.product, price="950")
    triggers_evaluate(now=evening, scenarios=[cart])
    waiting = Message.objects.get(client=a)
    assert waiting.status == MessageStatus.PLANNED and waiting.scheduled_for > evening
    return a, cart, waiting


def test_a_higher_scenario_cancels_a_lower_message_that_has_not_gone_yet(w: World) -> None:
    loose_policy()
    a, cart, waiting = _cart_message_planned_for_tomorrow(w)
    Message.objects.filter(pk=waiting.pk).update(status_reason="deferred: quiet hours")
    top = scenario(TriggerKind.PRICE_DROP, priority=90, delay_hours=0)
    Product.objects.filter(pk=w.product.pk).update(price=Decimal("700"))

    result = triggers_evaluate(now=NOW.replace(hour=23) + HOUR, scenarios=[top])

    waiting.refresh_from_db()
    assert (waiting.status, waiting.status_reason) == (MessageStatus.CANCELLED, "lower_priority")
    assert fired(cart)[a.pk][2:] == (FiringStatus.SUPPRESSED, "lower_priority")
    assert fired(top)[a.pk][2] == FiringStatus.PLANNED
    going = Message.objects.filter(client=a, status__in=[MessageStatus.PLANNED])
    assert [cast(TriggerFiring, m.firing).scenario_id for m in going] == [top.pk]
    assert result.outranked == 1
    assert result.counts(cart).suppressed == Counter({"lower_priority": 1})


def test_a_lower_message_stays_when_the_higher_one_is_not_planned(w: World) -> None:
    loose_policy()
    a, cart, waiting = _cart_message_planned_for_tomorrow(w)
    Message.objects.filter(pk=waiting.pk).update(status_reason="deferred: quiet hours")
    waiting.refresh_from_db()
    top = scenario(TriggerKind.PRICE_DROP, priority=90, delay_hours=0, channels=["email"])
    Product.objects.filter(pk=w.product.pk).update(price=Decimal("700"))
    Client.objects.filter(pk=a.pk).update(email="")  # the higher scenario cannot reach a

    result = triggers_evaluate(now=NOW.replace(hour=23) + HOUR, scenarios=[top])

    kept = Message.objects.get(pk=waiting.pk)
    assert (kept.status, kept.status_reason, kept.updated_at) == (
        MessageStatus.PLANNED,
        "deferred: quiet hours",
        waiting.updated_at,
    )
    assert fired(cart)[a.pk][2] == FiringStatus.PLANNED
    assert fired(top)[a.pk][2] == FiringStatus.SUPPRESSED
    assert result.outranked == 0


def test_a_lower_message_already_claimed_by_dispatch_is_left_to_go(w: World) -> None:
    loose_policy()
    a, cart, waiting = _cart_message_planned_for_tomorrow(w)
    Message.objects.filter(pk=waiting.pk).update(status=MessageStatus.QUEUED)
    top = scenario(TriggerKind.PRICE_DROP, priority=90, delay_hours=0)
    Product.objects.filter(pk=w.product.pk).update(price=Decimal("700"))

    result = triggers_evaluate(now=NOW.replace(hour=23) + HOUR, scenarios=[top])

    assert Message.objects.get(pk=waiting.pk).status == MessageStatus.QUEUED
    assert fired(cart)[a.pk][2] == FiringStatus.PLANNED
    # Both would wait for 09:00: the message on its way keeps the higher one an hour off.
    assert fired(top)[a.pk][2:] == (FiringStatus.SUPPRESSED, "min_gap")
    assert result.outranked == 0


def test_an_excluded_message_leaves_its_reason_on_the_firing(w: World) -> None:
    a, b, *_ = w.clients
    cart = scenario(TriggerKind.ABANDONED_CART, channels=["call"], voice_script="Здравствуйте")
    event(a, EventType.CART_ADD, NOW - 3 * HOUR, w.product)  # no consent to calls

    result = triggers_evaluate(now=NOW)

    assert fired(cart) == {a.pk: (fired(cart)[a.pk][0], 0, FiringStatus.SUPPRESSED, "no_consent")}
    assert result.counts(cart).as_dict() == {
        "fired": 1,
        "planned": 0,
        "suppressed": {"no_consent": 1},
        "stopped": 0,
    }
    assert not Message.objects.exists()


def test_re_evaluation_creates_nothing_new(w: World) -> None:
    cart = scenario(TriggerKind.ABANDONED_CART, followup_days=2, max_followups=1)
    for client in w.clients:
        event(client, EventType.CART_ADD, NOW - 3 * HOUR, w.product)
    first = triggers_evaluate(now=NOW)
    counts = (TriggerFiring.objects.count(), Message.objects.count())

    again = triggers_evaluate(now=NOW + HOUR)

    assert first.counts(cart).fired == 6 and again.counts(cart).fired == 0
    assert (TriggerFiring.objects.count(), Message.objects.count()) == counts == (6, 6)


def test_win_back_does_not_ask_again_about_clients_already_fired(w: World) -> None:
    winback = scenario(TriggerKind.WIN_BACK, days=60, offer=w.offer, sms_text="")
    a, b, *_ = w.clients
    buy(a, NOW - 61 * DAY)
    buy(b, NOW - 70 * DAY)
    triggers_evaluate(now=NOW)
    came_back_and_lapsed = buy(a, NOW + DAY - 61 * DAY + HOUR)  # a newer purchase, also lapsed

    proposed = _FINDERS[TriggerKind.WIN_BACK](_run_at(NOW + DAY, winback), winback)

    # b fired for its last purchase and is not proposed; a's latest purchase is a new occasion.
    assert [(p.client_id, p.occasion) for p in proposed] == [
        (a.pk, f"winback:{came_back_and_lapsed.pk}")
    ]


def test_an_engine_driven_scenario_asks_the_engine_only_about_new_occasions(w: World) -> None:
    cross, phone = phone_cross_sell_scenario()
    a, b, *_ = w.clients
    buy(a, NOW - 2 * DAY, phone)
    buy(b, NOW - 2 * DAY, phone)
    triggers_evaluate(now=NOW)
    again = buy(b, NOW + HOUR, phone)
    asked: list[int] = []

    def spy(clients: list[int], **kwargs: Any) -> Any:
        asked.extend(clients)
        return propose(clients, **kwargs)

    with mock.patch("offers.engine.propose", spy):
        proposed = _FINDERS[TriggerKind.CROSS_SELL](_run_at(NOW + 3 * HOUR, cross), cross)

    assert asked == [b.pk]  # a was answered for its latest purchase already
    assert [(p.client_id, p.occasion) for p in proposed] == [(b.pk, f"purchase:{again.pk}")]


def _run_at(now: dt.datetime, *scenarios: TriggerScenario) -> _Run:
    return _Run(
        now=now,
        batch_size=100,
        catch_up=dt.timedelta(hours=48),
        result=TriggerResult(),
        scenarios={s.pk: s for s in scenarios},
    )


def test_inactive_scenarios_and_dead_offers_do_nothing(w: World) -> None:
    scenario(TriggerKind.ABANDONED_CART, is_active=False)
    w.offer.status = "paused"
    w.offer.save()
    scenario(TriggerKind.ABANDONED_CART, offer=w.offer)
    event(w.clients[0], EventType.CART_ADD, NOW - 3 * HOUR, w.product)

    assert triggers_evaluate(now=NOW).fired == 0
    assert not TriggerFiring.objects.exists()


def _world_with_carts(n: int) -> World:
    world = make_world(n)
    for client in world.clients:
        event(client, EventType.CART_ADD, NOW - 3 * HOUR, world.product, price="1000")
        event(client, EventType.PRODUCT_VIEW, NOW - 2.5 * HOUR, world.product)
        buy(client, NOW - 70 * DAY)
    return world


def test_queries_do_not_grow_with_the_number_of_clients(django_assert_max_num_queries: Any) -> None:
    small = _world_with_carts(5)
    kinds = [TriggerKind.ABANDONED_CART, TriggerKind.BROWSE_ABANDONMENT, TriggerKind.PRICE_DROP]
    for priority, kind in enumerate(kinds):
        scenario(kind, priority=priority, followup_days=1, max_followups=1)
    scenario(TriggerKind.WIN_BACK, days=60, offer=small.offer, sms_text="")
    with CaptureQueriesContext(connection) as five:
        triggers_evaluate(now=NOW)
    TriggerFiring.objects.all().delete()
    Message.objects.all().delete()

    more = _world_with_carts(95)
    segment_add_clients(segment=small.segment, clients=[c.pk for c in more.clients])
    # SQLite splits a bulk insert of messages by its parameter limit (PostgreSQL does not):
    # those are the only statements allowed to grow.
    bound = len(five.captured_queries) + 3  # 100 messages: four inserts on SQLite, not one
    with CaptureQueriesContext(connection) as hundred, django_assert_max_num_queries(bound):
        result = triggers_evaluate(now=NOW)

    assert _statements(hundred) == _statements(five)
    assert result.fired == 400 and result.planned == 100


def test_giving_way_costs_the_same_statements_for_five_clients_as_for_forty() -> None:
    loose_policy()
    evening = NOW.replace(hour=23)
    cart = scenario(TriggerKind.ABANDONED_CART, priority=50)
    top = scenario(TriggerKind.PRICE_DROP, priority=90, delay_hours=0)
    captured = []
    for n in (5, 40):
        world = make_world(n)
        for client in world.clients:
            event(client, EventType.CART_ADD, evening - 3 * HOUR, world.product, price="950")
        triggers_evaluate(now=evening, scenarios=[cart])
        Product.objects.filter(pk=world.product.pk).update(price=Decimal("700"))
        with CaptureQueriesContext(connection) as queries:
            result = triggers_evaluate(now=evening + HOUR, scenarios=[top])
        assert result.outranked == n
        captured.append(_statements(queries))
        evening += DAY  # the next world's evening, outside this one's window

    assert captured[0] == captured[1]


def _statements(queries: CaptureQueriesContext) -> int:
    return sum(1 for q in queries.captured_queries if 'INTO "messaging_message"' not in q["sql"])


def test_the_task_and_its_schedule(w: World) -> None:
    from messaging.tasks.triggers import evaluate_triggers

    scenario(TriggerKind.ABANDONED_CART)
    event(w.clients[0], EventType.CART_ADD, dt.datetime.now(dt.UTC) - 3 * HOUR, w.product)

    outcome = evaluate_triggers.apply().get()

    assert sum(s["fired"] for s in outcome["scenarios"].values()) == 1
    entry = next(s for s in SCHEDULES if s.task == "messaging.tasks.triggers.evaluate_triggers")
    assert entry.crontab == {"minute": "*/15"} and entry.queue == "messaging"


# PostgreSQL: a campaign planner racing a trigger evaluation ---------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_campaign_racing_a_trigger_keeps_caps_and_never_duplicates(postgres: None) -> None:
    policy = ContactPolicy.objects.create(
        name="race", is_active=True, total_limit=1, min_gap_hours=24
    )
    ChannelRule.objects.create(policy=policy, channel=Channel.SMS, limit=1)
    world = make_world(60, channels=(Channel.SMS,))
    world.campaign.channels = ["sms"]
    world.campaign.save()
    cart = scenario(TriggerKind.ABANDONED_CART)
    for client in world.clients:
        event(client, EventType.CART_ADD, NOW - 3 * HOUR, world.product)

    from messaging.models import CampaignRun
    from messaging.services.campaigns import campaign_run_plan

    run = CampaignRun.objects.create(campaign=world.campaign, started_at=NOW)
    go = threading.Event()
    errors: list[BaseException] = []

    def in_thread(work: Any, wait: bool) -> None:
        try:
            if wait:
                go.wait(timeout=60)
            work()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connection.close()

    campaign = threading.Thread(
        target=in_thread,
        args=(lambda: campaign_run_plan(run=run.pk, batch_size=3, now=NOW), False),
    )
    evaluations = [
        threading.Thread(
            target=in_thread,
            args=(lambda size=size: triggers_evaluate(now=NOW, batch_size=size), True),
        )
        for size in (5, 11)
    ]
    for thread in [campaign, *evaluations]:
        thread.start()
    # The evaluations start once the campaign has planned its first batch, so they run into it
    # in the middle of the audience.
    for _ in range(600):
        if CampaignRun.objects.get(pk=run.pk).processed or not campaign.is_alive():
            break
        time.sleep(0.05)
    go.set()
    for thread in [campaign, *evaluations]:
        thread.join(timeout=120)

    assert not errors
    per_client = Counter(
        Message.objects.filter(status__in=[MessageStatus.PLANNED]).values_list(
            "client_id", flat=True
        )
    )
    assert set(per_client) == {c.pk for c in world.clients}  # everyone got exactly one of the two
    assert max(per_client.values()) == 1
    firings = TriggerFiring.objects.filter(scenario=cart)
    assert firings.count() == 60
    keys = list(Message.objects.values_list("idempotency_key", flat=True))
    assert len(keys) == len(set(keys))
    planned_by_trigger = Message.objects.filter(firing__isnull=False).count()
    assert 0 < planned_by_trigger < 60  # both planners got some clients: they really raced
    assert planned_by_trigger == firings.filter(status=FiringStatus.PLANNED).count()
    assert (
        firings.filter(status=FiringStatus.SUPPRESSED)
        .exclude(reason__in=["min_gap", "channel_cap", "total_cap"])
        .count()
        == 0
    )


# Invariant 5: a sensitive product is never named -------------------------------------------------


def _cart(client: Client, product: Product) -> None:
    event(client, EventType.CART_ADD, NOW - 3 * HOUR, product)


def _view(client: Client, product: Product) -> None:
    event(client, EventType.PRODUCT_VIEW, NOW - 3 * HOUR, product)


def _price(client: Client, product: Product) -> None:
    event(client, EventType.CART_ADD, NOW - DAY, product, price=str(product.price + 500))


def _regular(client: Client, product: Product) -> None:
    buy(client, NOW - 60 * DAY - HOUR, product)
    buy(client, NOW - 30 * DAY - HOUR, product)


@pytest.mark.parametrize(
    ("kind", "history"),
    [
        (TriggerKind.ABANDONED_CART, _cart),
        (TriggerKind.BROWSE_ABANDONMENT, _view),
        (TriggerKind.PRICE_DROP, _price),
        (TriggerKind.REPLENISHMENT, _regular),
    ],
)
def test_a_trigger_never_names_a_sensitive_product(w: World, kind: str, history: Any) -> None:
    loose_policy()
    pharmacy = CategoryFactory(name="Аптека", sensitive=True)
    secret = ProductFactory(name="Тест на беременность", category=pharmacy, price=Decimal("300"))
    named = scenario(
        kind,
        days=30,
        delay_hours=1,
        sms_text="{{ client.first_name }}, {{ product.name }} {{ product.category }} ждёт вас",
    )
    sensitive_client, ordinary_client = w.clients[0], w.clients[1]
    history(sensitive_client, secret)
    history(ordinary_client, w.product)

    triggers_evaluate(now=NOW)

    messages = {m.client_id: m for m in Message.objects.filter(firing__scenario=named)}
    # The same history with an ordinary product names it: the scenario does speak of products.
    assert "Purina" in messages[ordinary_client.pk].text
    said = messages[sensitive_client.pk]
    for spoken in (said.text, said.reason, repr(said.products)):
        assert "беременност" not in spoken and "Аптека" not in spoken


@pytest.mark.django_db(transaction=True)
def test_a_lower_message_dispatch_holds_is_neither_waited_for_nor_cancelled(
    postgres: None,
) -> None:
    loose_policy()
    world = make_world(1)
    a, cart, waiting = _cart_message_planned_for_tomorrow(world)
    top = scenario(TriggerKind.PRICE_DROP, priority=90, delay_hours=0)
    Product.objects.filter(pk=world.product.pk).update(price=Decimal("700"))
    locked, release = threading.Event(), threading.Event()

    def dispatcher_claiming() -> None:  # dispatch's claim: the row locked, status not yet set
        try:
            with transaction.atomic():
                Message.objects.select_for_update().get(pk=waiting.pk)
                locked.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    holder = threading.Thread(target=dispatcher_claiming)
    holder.start()
    try:
        assert locked.wait(timeout=10)
        started = time.monotonic()
        result = triggers_evaluate(now=NOW.replace(hour=23) + HOUR, scenarios=[top])
        waited = time.monotonic() - started
        still_held = holder.is_alive()
    finally:
        release.set()
        holder.join(timeout=30)

    assert still_held, f"the evaluation waited for the dispatcher ({waited:.1f} s)"
    assert Message.objects.get(pk=waiting.pk).status == MessageStatus.PLANNED
    assert fired(cart)[a.pk][2] == FiringStatus.PLANNED
    assert result.outranked == 0
