"""The demo offers over seed_demo data: sensible products and Russian reasons for real demo
clients; the command is idempotent; the benchmark is registered."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from crm.models import Category, Client
from offers.engine import propose
from offers.models import CrossSellRule, Offer

pytestmark = pytest.mark.django_db


def test_demo_offers_propose_cat_food_and_accessories_with_russian_reasons():
    call_command(
        "seed_demo", clients=300, seed=3, flush=True, stdout=io.StringIO(), stderr=io.StringIO()
    )
    out = io.StringIO()
    call_command("offers_demo", codes=50, stdout=out)
    call_command("offers_demo", codes=50, stdout=io.StringIO())  # idempotent

    assert Offer.objects.count() == 3
    assert CrossSellRule.objects.count() == 4
    cat_food = Category.objects.get(slug="cat-food")
    proposals = propose(Client.objects.all(), at=timezone.now())
    replenish = [p for p in proposals if p.strategy == "replenish" and not p.is_control]
    cross = [p for p in proposals if p.strategy == "cross_sell" and not p.is_control]
    assert replenish and cross
    assert all(
        p.products[0]["category"] in ("Сухой корм для кошек", "Влажный корм для кошек")
        for p in replenish
    )
    assert all(p.reason.startswith("Вы покупали «") for p in replenish)
    assert all("«" in p.reason for p in cross)
    assert all(p.texts["sms"].text for p in replenish + cross)
    assert cat_food.path


def test_the_offers_benchmark_is_registered():
    from crm.benchmarking import benchmarks

    assert "offers" in benchmarks()
