"""The engine: set-based (bounded queries), eligibility, holdout, ranking, promo codes, limits."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from crm.models import Client
from offers.catalog import Catalog
from offers.engine import client_contexts, propose
from offers.models import CrossSellRule, PromoCode
from offers.selectors import next_best_offers
from offers.services import promo_code_redeem, promo_pool_upload
from segments.models import Segment
from segments.services import segment_add_clients, segment_save
from tests.factories import (
    ClientFactory,
    LoyaltyAccountFactory,
    OfferFactory,
    OfferVariantFactory,
    PromoPoolFactory,
    TierFactory,
)
from tests.offers.conftest import NOW

pytestmark = pytest.mark.django_db


def _offer(**kwargs):
    kwargs.setdefault("starts_at", NOW - dt.timedelta(days=1))
    kwargs.setdefault("ends_at", NOW + dt.timedelta(days=10))
    offer = OfferFactory(**kwargs)
    OfferVariantFactory(offer=offer)
    return offer


def _replenishers(shop, buy, n):
    clients = ClientFactory.create_batch(n)
    for client in clients:
        for days in (88, 58, 28):
            buy(client, shop.whiskas, days)
        buy(client, shop.phone, 2)
    return clients


def test_a_batch_costs_the_same_queries_for_10_and_200_clients(shop, buy):
    clients = _replenishers(shop, buy, 200)
    CrossSellRule.objects.create(source_category=shop.phones, target_category=shop.power_banks)
    segment = segment_save(segment=Segment(name="Все"), rules={"match": "all", "rules": []})
    replenish = _offer(strategy="replenish")
    cross = _offer(strategy="cross_sell", holdout_percent=Decimal("10"))
    replenish.segments.set([segment])
    cross.segments.set([segment])
    ids = [c.pk for c in clients]

    def count(batch):
        with CaptureQueriesContext(connection) as captured:
            proposals = propose(batch, at=NOW)
        return len(captured.captured_queries), proposals

    small_queries, small = count(ids[:10])
    big_queries, big = count(ids)

    assert len(small) == 20 and len(big) == 400
    assert small_queries == big_queries
    assert big_queries <= 20


def test_batch_queries_are_bounded(shop, buy, django_assert_max_num_queries):
    clients = _replenishers(shop, buy, 50)
    _offer(strategy="replenish")
    catalog = Catalog.load(at=NOW)

    with django_assert_max_num_queries(10):
        proposals = propose(clients, at=NOW, catalog=catalog, channel="sms")

    assert len(proposals) == 50
    assert all(set(p.texts) == {"sms"} for p in proposals)


def test_target_and_exclusion_segments(shop, buy):
    inside, excluded, outside = _replenishers(shop, buy, 3)
    target = segment_save(segment=Segment(name="Цель", kind="static"))
    segment_add_clients(segment=target, clients=[inside.pk, excluded.pk])
    blocked = segment_save(segment=Segment(name="Стоп", kind="static"))
    segment_add_clients(segment=blocked, clients=[excluded.pk])
    offer = _offer(strategy="replenish")
    offer.segments.set([target])
    offer.exclude_segments.set([blocked])

    proposals = propose([inside, excluded, outside], at=NOW)

    assert [p.client_id for p in proposals] == [inside.pk]


def test_live_offers_only_and_channel_filter(shop, buy):
    (client,) = _replenishers(shop, buy, 1)
    _offer(strategy="replenish", status="draft")
    _offer(
        strategy="replenish",
        ends_at=NOW - dt.timedelta(hours=1),
        starts_at=NOW - dt.timedelta(days=3),
    )
    live = _offer(strategy="replenish", channels=["sms", "email"])

    assert [p.offer_id for p in propose([client], at=NOW)] == [live.pk]
    assert propose([client], at=NOW, channel="call") == []
    (email,) = propose([client], at=NOW, channel="email")
    assert set(email.texts) == {"email"}
    assert email.texts["email"].subject.endswith("для вас скидка 10%")


def test_holdout_clients_get_a_control_proposal_without_texts(shop, buy):
    clients = _replenishers(shop, buy, 40)
    offer = _offer(strategy="replenish", holdout_percent=Decimal("50"))

    proposals = propose(clients, at=NOW)

    control = [p for p in proposals if p.is_control]
    assert 5 < len(control) < 35
    assert all(
        p.texts == {} and p.variant_id is None and p.variant_name == "control" for p in control
    )
    assert all(p.texts["sms"].text for p in proposals if not p.is_control)
    # and stable: the same split next time
    again = propose(clients, at=NOW)
    assert [p.is_control for p in again] == [p.is_control for p in proposals]
    assert offer.pk == proposals[0].offer_id


def test_next_best_offers_ranked_by_priority_then_expected_value(shop, buy):
    (client,) = _replenishers(shop, buy, 1)
    CrossSellRule.objects.create(source_category=shop.phones, target_category=shop.power_banks)
    low = _offer(strategy="replenish", priority=10, name="Корм")
    high = _offer(strategy="cross_sell", priority=90, name="Аккумулятор")
    rich = _offer(strategy="cross_sell", priority=10, name="Аккумулятор, 5%", benefit_value=5)

    best = next_best_offers(client=client, at=NOW)

    assert [p.offer_id for p in best] == [high.pk, rich.pk, low.pk]
    assert best[0].reason.startswith("Вы недавно купили «Samsung Galaxy A55»")
    assert best[1].expected_value > best[2].expected_value


def test_redeemed_offer_is_not_offered_again_and_codes_assigned_on_request(shop, buy):
    a, b = _replenishers(shop, buy, 2)
    pool = PromoPoolFactory(prefix="CAT-", code_length=4)
    promo_pool_upload(pool=pool, codes=["CAT-0001", "CAT-0002", "CAT-0003"])
    offer = _offer(strategy="replenish", promo_pool=pool)

    preview = propose([a, b], at=NOW)
    assert [p.promo_code for p in preview] == ["", ""]
    assert "CAT-XXXX" in preview[0].texts["sms"].text
    assert PromoCode.objects.filter(client__isnull=False).count() == 0

    assigned = propose([a, b], at=NOW, assign_codes=True)
    assert [p.promo_code for p in assigned] == ["CAT-0001", "CAT-0002"]
    assert "CAT-0001" in assigned[0].texts["sms"].text
    assert PromoCode.objects.get(code="CAT-0001").offer == offer

    promo_code_redeem(code="CAT-0001", client_id=a.pk)
    assert [p.client_id for p in propose([a, b], at=NOW)] == [b.pk]


def test_quantity_limit_counts_codes_handed_out(shop, buy):
    clients = _replenishers(shop, buy, 5)
    pool = PromoPoolFactory()
    promo_pool_upload(pool=pool, codes=[f"Q{i}" for i in range(10)])
    _offer(strategy="replenish", promo_pool=pool, quantity_limit=3)

    first = propose(clients[:2], at=NOW, assign_codes=True)
    second = propose(clients, at=NOW, assign_codes=True)

    assert len(first) == 2
    # the two who hold codes are proposed again (same codes), one more fits under the limit
    assert PromoCode.objects.filter(client__isnull=False).count() == 3
    assert len(second) == 3
    assert {p.promo_code for p in first} < {p.promo_code for p in second}


def test_anonymized_clients_get_nothing(shop, buy):
    (client,) = _replenishers(shop, buy, 1)
    Client.objects.filter(pk=client.pk).update(is_anonymized=True)
    _offer(strategy="replenish")

    assert propose([client], at=NOW) == []


def test_client_contexts_read_names_tier_and_points_in_one_query(django_assert_num_queries):
    gold = TierFactory(name="Gold", rank=2)
    member = ClientFactory(first_name="Анна", middle_name="Петровна", last_name="Иванова")
    LoyaltyAccountFactory(client=member, tier=gold, balance=1500)
    newcomer = ClientFactory(first_name="Олег", middle_name="", last_name="Сидоров")

    with django_assert_num_queries(1):
        contexts = client_contexts([member.pk, newcomer.pk, 10**9])

    assert set(contexts) == {member.pk, newcomer.pk}
    assert contexts[member.pk] == {
        "client": {
            "first_name": "Анна",
            "middle_name": "Петровна",
            "last_name": "Иванова",
            "full_name": "Иванова Анна Петровна",
            "name": "Анна Петровна",
            "city": member.city,
            "gender": member.gender,
        },
        "tier": "Gold",
        "points": 1500,
    }
    assert contexts[newcomer.pk]["tier"] == ""
    assert contexts[newcomer.pk]["points"] == 0
    assert contexts[newcomer.pk]["client"]["name"] == "Олег"
    assert client_contexts([]) == {}
