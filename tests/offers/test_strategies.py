"""Each product strategy on crafted histories, through the engine (``propose``)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from crm.models import Product
from offers.engine import propose
from offers.models import AssociationStatus, CrossSellRule, ProductAssociation
from offers.strategies import NEUTRAL_REASON
from tests.factories import ClientFactory, OfferFactory, OfferVariantFactory, ProductFactory
from tests.offers.conftest import NOW

pytestmark = pytest.mark.django_db


def _offer(**kwargs):
    offer = OfferFactory(**kwargs)
    OfferVariantFactory(offer=offer)
    return offer


def _one(client, offer, **kwargs):
    proposals = propose([client.pk], offers=[offer], at=NOW, **kwargs)
    assert len(proposals) <= 1
    return proposals[0] if proposals else None


# Replenish -------------------------------------------------------------------------------------


def test_replenish_cat_food_due_by_the_clients_own_cycle(shop, buy):
    # given a client who buys the same cat food every 30 days, last time 28 days ago
    client = ClientFactory(first_name="Анна")
    for days in (118, 88, 58, 28):
        buy(client, shop.whiskas, days)
    offer = _offer(strategy="replenish")

    proposal = _one(client, offer)

    assert proposal.product_ids == [shop.whiskas.pk]
    assert proposal.facts["days_since"] == 28
    assert proposal.facts["interval_days"] == 30
    assert proposal.facts["product"] == shop.whiskas.name
    assert proposal.reason == (
        f"Вы покупали «{shop.whiskas.name}» 28 дней назад, а обычно берёте раз в 30 дней."
    )
    assert proposal.texts["sms"].text.startswith("Анна, скидка 10% на Whiskas")


def test_replenish_not_due_too_early_nor_long_lapsed(shop, buy):
    early, lapsed, sparse = ClientFactory(), ClientFactory(), ClientFactory()
    for days in (100, 70, 40, 10):
        buy(early, shop.whiskas, days)
    for days in (190, 160, 130, 100):  # interval 30, 100 days since: a win-back, not a refill
        buy(lapsed, shop.whiskas, days)
    for days in (58, 28):  # two purchases are not a cycle yet
        buy(sparse, shop.whiskas, days)
    offer = _offer(strategy="replenish")

    assert propose([early.pk, lapsed.pk, sparse.pk], offers=[offer], at=NOW) == []


def test_replenish_offers_an_alternative_when_the_regular_product_is_out_of_stock(shop, buy):
    client = ClientFactory()
    for days in (90, 60, 30):
        buy(client, shop.whiskas, days)
    shop.whiskas.in_stock = False
    shop.whiskas.save()
    offer = _offer(strategy="replenish", products_per_message=2)

    proposal = _one(client, offer)

    assert shop.whiskas.pk not in proposal.product_ids
    assert set(proposal.product_ids) == {shop.whiskas_wet.pk, shop.own_cat_food.pk}
    assert proposal.facts["product"] == shop.whiskas.name  # the fact is still the habit


# Cross-sell ------------------------------------------------------------------------------------


def test_cross_sell_smartphone_to_power_bank_by_category_rule(shop, buy):
    client = ClientFactory()
    buy(client, shop.phone, 3)
    CrossSellRule.objects.create(
        source_category=shop.phones,
        target_category=shop.power_banks,
        reason_text="К смартфону {{ fact.product }} пригодится внешний аккумулятор.",
    )
    offer = _offer(strategy="cross_sell")

    proposal = _one(client, offer)

    # the in-stock power bank only (the small one is out of stock)
    assert proposal.product_ids == [shop.anker.pk]
    assert proposal.reason == "К смартфону Samsung Galaxy A55 пригодится внешний аккумулятор."
    assert proposal.facts["target"] == "Внешние аккумуляторы"
    assert proposal.facts["days_since"] == 3


def test_cross_sell_skips_clients_who_already_have_the_complement_or_bought_long_ago(shop, buy):
    has_one, long_ago = ClientFactory(), ClientFactory()
    buy(has_one, shop.phone, 10)
    buy(has_one, shop.anker, 5)
    buy(long_ago, shop.phone, 200)
    CrossSellRule.objects.create(source_category=shop.electronics, target_category=shop.power_banks)
    offer = _offer(strategy="cross_sell", recent_days=30)

    assert propose([has_one.pk, long_ago.pk], offers=[offer], at=NOW) == []


def test_cross_sell_product_rule_and_default_reason(shop, buy):
    client = ClientFactory()
    buy(client, shop.phone, 1)
    CrossSellRule.objects.create(source_product=shop.phone, target_product=shop.anker)
    offer = _offer(strategy="cross_sell")

    proposal = _one(client, offer)

    assert proposal.product_ids == [shop.anker.pk]
    assert proposal.reason == (
        "Вы недавно купили «Samsung Galaxy A55» — к этой покупке пригодится «Anker 20000 мА·ч»."
    )


def test_cross_sell_uses_accepted_mined_associations_only(shop, buy):
    client = ClientFactory()
    buy(client, shop.phone, 2)
    association = ProductAssociation.objects.create(
        antecedent=shop.phones,
        consequent=shop.power_banks,
        pair_clients=50,
        antecedent_clients=100,
        consequent_clients=80,
        total_clients=1000,
        support=0.05,
        confidence=0.5,
        lift=6.25,
        mined_at=timezone.now(),
    )
    offer = _offer(strategy="cross_sell")
    assert _one(client, offer) is None  # proposed, not accepted yet

    association.status = AssociationStatus.ACCEPTED
    association.save()
    proposal = _one(client, offer)

    assert proposal.product_ids == [shop.anker.pk]
    assert proposal.reason == (
        "Вместе с товарами категории «Смартфоны» часто покупают внешние аккумуляторы."
    )


# Own brand, same brand, new arrivals, fixed ------------------------------------------------------


def test_own_brand_switch_offers_the_cheaper_private_label(shop, buy):
    client = ClientFactory()
    for days in (60, 30, 5):
        buy(client, shop.whiskas, days)
    offer = _offer(strategy="own_brand")

    proposal = _one(client, offer)

    assert proposal.product_ids == [shop.own_cat_food.pk]
    assert proposal.facts["category"] == "Корм для кошек"
    assert proposal.reason == (
        f"Вы покупаете «{shop.whiskas.name}» — попробуйте наш бренд в той же категории: "
        f"«{shop.own_cat_food.name}»."
    )


def test_own_brand_not_offered_to_who_already_buys_it(shop, buy):
    client = ClientFactory()
    buy(client, shop.whiskas, 30)
    buy(client, shop.own_cat_food, 5)

    assert _one(client, _offer(strategy="own_brand")) is None


def test_same_brand_offers_another_product_of_the_brand(shop, buy):
    client = ClientFactory()
    buy(client, shop.whiskas, 20)
    buy(client, shop.whiskas, 5)

    proposal = _one(client, _offer(strategy="same_brand"))

    assert proposal.product_ids == [shop.whiskas_wet.pk]
    assert proposal.facts["brand"] == "Whiskas"
    assert proposal.reason == "Вы выбираете Whiskas — у бренда есть для вас ещё кое-что."


def test_new_arrivals_in_the_favourite_category(shop, buy):
    client = ClientFactory()
    buy(client, shop.whiskas, 20)
    buy(client, shop.whiskas, 50)
    buy(client, shop.phone, 40)
    Product.objects.update(created_at=NOW - dt.timedelta(days=200))
    fresh = ProductFactory(name="Новинка: корм с уткой", category=shop.cat_food, cost=400)
    Product.objects.filter(pk=fresh.pk).update(created_at=NOW - dt.timedelta(days=3))

    proposal = _one(client, _offer(strategy="new_arrivals", recent_days=30))

    assert proposal.product_ids == [fresh.pk]
    assert proposal.facts == {"category": "Корм для кошек", "count": 2}
    assert proposal.reason == "Новинки в категории «Корм для кошек», которую вы любите."


def test_the_offer_category_limits_what_other_strategies_propose(shop, buy):
    client = ClientFactory()
    for days in (90, 60, 30):
        buy(client, shop.whiskas, days)
        buy(client, shop.anker, days)

    proposals = propose([client], offers=[_offer(strategy="replenish")], at=NOW)
    scoped = propose(
        [client], offers=[_offer(strategy="replenish", fixed_category=shop.electronics)], at=NOW
    )

    assert len(proposals) == 1
    assert scoped[0].product_ids == [shop.anker.pk]


def test_fixed_products_and_category(shop):
    client = ClientFactory()
    offer = _offer(strategy="fixed", fixed_category=shop.power_banks)

    proposal = _one(client, offer)

    assert proposal.product_ids == [shop.anker.pk]
    assert proposal.reason == "Мы подобрали это предложение специально для вас."


# Sensitive categories ------------------------------------------------------------------------


def test_sensitive_products_are_never_proposed_unless_the_offer_allows(shop, buy):
    client = ClientFactory()
    for days in (90, 60, 30):
        buy(client, shop.condoms, days)
    replenish = _offer(strategy="replenish")
    fixed = _offer(strategy="fixed")
    fixed.fixed_products.set([shop.condoms])

    assert propose([client.pk], offers=[replenish, fixed], at=NOW) == []

    allowed = _offer(strategy="replenish", allow_sensitive=True)
    proposal = _one(client, allowed)

    # proposed, but the reason speaks of nothing and the facts are not handed on
    assert proposal.product_ids == [shop.condoms.pk]
    assert proposal.reason == NEUTRAL_REASON
    assert proposal.facts == {}


def test_sensitive_history_never_triggers_a_spoken_cross_sell(shop, buy):
    client = ClientFactory()
    buy(client, shop.condoms, 2)
    CrossSellRule.objects.create(
        source_category=shop.pharmacy,
        target_category=shop.power_banks,
        reason_text="Вы купили {{ fact.product }}",
    )

    assert _one(client, _offer(strategy="cross_sell")) is None
    proposal = _one(client, _offer(strategy="cross_sell", allow_sensitive=True))
    assert proposal.reason == NEUTRAL_REASON
    assert "Durex" not in proposal.reason


def test_margin_guard_drops_products_the_discount_would_sell_below_margin(shop, buy):
    client = ClientFactory()
    for days in (90, 60, 30):
        buy(client, shop.whiskas, days)
    # 40% off 800 = 480 < cost 500
    offer = _offer(strategy="replenish", benefit_value=Decimal("40"), products_per_message=3)

    proposal = _one(client, offer)

    assert shop.whiskas.pk not in proposal.product_ids
    assert shop.own_cat_food.pk in proposal.product_ids  # 360 - 300 = 16.7% margin
