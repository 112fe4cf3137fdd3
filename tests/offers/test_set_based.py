"""The set-based strategies (SQL statistics for a whole batch) decide exactly as the per-client
reference functions do on the same histories, on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

import pytest

from offers.catalog import Catalog
from offers.engine import _cross_sell_specs, _histories, _OfferPlan
from offers.models import CrossSellRule
from offers.strategies import cross_sell, cross_sell_many, replenish, replenish_many
from tests.factories import ClientFactory, OfferFactory
from tests.offers.conftest import NOW

pytestmark = pytest.mark.django_db


def _population(shop, buy, n=36, seed=7):
    """Clients with regular cycles (some due, some early, some lapsed), noise purchases,
    same-day repeats, sensitive and out-of-window purchases."""
    rng = random.Random(seed)
    products = [shop[k] for k in ("whiskas", "whiskas_wet", "own_cat_food", "phone", "anker")]
    clients = ClientFactory.create_batch(n)
    for client in clients:
        for _cycle in range(rng.randint(1, 2)):
            product = rng.choice(products[:3] + [shop.condoms])
            interval = rng.choice([2, 5, 9, 14, 30, 31])
            last = interval * rng.uniform(0.5, 2.3)
            for k in range(rng.randint(2, 6)):
                days = last + k * interval + rng.uniform(-0.4, 0.4)
                buy(client, product, days)
                if rng.random() < 0.2:  # a second item the same day
                    buy(client, rng.choice(products), days + 0.01)
        for _noise in range(rng.randint(0, 4)):
            buy(client, rng.choice(products), rng.uniform(0.1, 420))
    return clients


def _reference(strategy, plan, ids):
    lookback = int(plan.offer.lookback_days)
    histories = _histories(ids, since=NOW - dt.timedelta(days=lookback), at=NOW)
    out = {}
    for client_id in ids:
        choice = strategy(plan.input, plan.input.usable_history(histories.get(client_id, ())))
        if choice is not None:
            out[client_id] = choice
    return out


def _same(got, expected):
    assert set(got) == set(expected)
    for client_id, choice in expected.items():
        mine = got[client_id]
        assert (mine.products, mine.fact, mine.reason_template, mine.sensitive_fact) == (
            choice.products,
            choice.fact,
            choice.reason_template,
            choice.sensitive_fact,
        ), client_id
        assert mine.score == pytest.approx(choice.score)


@pytest.mark.parametrize(
    "settings_",
    [
        {},
        {"allow_sensitive": True, "replenish_lead_days": 0},
        {"fixed_category_key": "pets", "lookback_days": 120, "replenish_lead_days": 7},
        {"products_per_message": 3, "benefit_value": Decimal("40")},
    ],
)
def test_replenish_many_matches_the_per_client_strategy(shop, buy, settings_):
    clients = _population(shop, buy)
    scope = settings_.pop("fixed_category_key", None)
    if scope:
        settings_["fixed_category"] = shop[scope]
    offer = OfferFactory(strategy="replenish", **settings_)
    plan = _OfferPlan(offer, Catalog.load(at=NOW), [], NOW)
    ids = sorted(c.pk for c in clients)

    expected = _reference(replenish, plan, ids)
    got = replenish_many(plan.input, ids)

    assert len(expected) >= 3  # the population has due clients
    _same(got, expected)


@pytest.mark.parametrize(
    "settings_",
    [{}, {"recent_days": 90, "allow_sensitive": True}, {"lookback_days": 20, "recent_days": 60}],
)
def test_cross_sell_many_matches_the_per_client_strategy(shop, buy, settings_):
    clients = _population(shop, buy, seed=11)
    CrossSellRule.objects.create(source_category=shop.phones, target_category=shop.power_banks)
    CrossSellRule.objects.create(
        source_product=shop.whiskas, target_product=shop.whiskas_wet, priority=5
    )
    CrossSellRule.objects.create(source_category=shop.pets, target_category=shop.electronics)
    CrossSellRule.objects.create(source_category=shop.pharmacy, target_product=shop.anker)
    offer = OfferFactory(strategy="cross_sell", **settings_)
    plan = _OfferPlan(offer, Catalog.load(at=NOW), _cross_sell_specs(), NOW)
    ids = sorted(c.pk for c in clients)

    expected = _reference(cross_sell, plan, ids)
    got = cross_sell_many(plan.input, ids)

    assert len(expected) >= 3
    _same(got, expected)


def test_replenish_many_with_a_catalog_too_large_for_the_id_indexed_array(shop, buy, monkeypatch):
    # PostgreSQL joins the (product, category) pairs instead of indexing an array by id.
    monkeypatch.setattr("offers.strategies.DENSE_CATEGORY_ARRAY_MAX", 0)
    clients = _population(shop, buy, seed=3)
    offer = OfferFactory(strategy="replenish")
    plan = _OfferPlan(offer, Catalog.load(at=NOW), [], NOW)
    ids = sorted(c.pk for c in clients)

    expected = _reference(replenish, plan, ids)

    assert len(expected) >= 3
    _same(replenish_many(plan.input, ids), expected)
