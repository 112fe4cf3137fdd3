"""Association mining: support, confidence and lift over clients; decisions are kept."""

from __future__ import annotations

import pytest

from offers.models import AssociationStatus, ProductAssociation
from offers.services import association_decide, associations_mine
from offers.tasks import mine_associations
from tests.factories import ClientFactory
from tests.offers.conftest import NOW

pytestmark = pytest.mark.django_db


def test_mines_smartphone_then_power_bank(shop, buy):
    # 10 clients buy a phone and a power bank 5 days later; 5 buy a phone only;
    # 25 buy cat food only; 5 buy a power bank only; 3 buy condoms then a power bank
    for _ in range(10):
        c = ClientFactory()
        buy(c, shop.phone, 40)
        buy(c, shop.anker, 35)
    for _ in range(5):
        buy(ClientFactory(), shop.phone, 20)
    for _ in range(25):
        buy(ClientFactory(), shop.whiskas, 20)
    for _ in range(5):
        buy(ClientFactory(), shop.anker, 20)
    for _ in range(3):
        c = ClientFactory()
        buy(c, shop.condoms, 40)
        buy(c, shop.anker, 39)

    result = associations_mine(min_pair_clients=3, at=NOW)

    pair = ProductAssociation.objects.get(antecedent=shop.phones, consequent=shop.power_banks)
    assert (pair.pair_clients, pair.antecedent_clients, pair.consequent_clients) == (10, 15, 18)
    assert pair.total_clients == 48  # buying clients in the window (condoms still count)
    assert pair.support == pytest.approx(10 / 48, abs=1e-6)
    assert pair.confidence == pytest.approx(10 / 15, abs=1e-6)
    assert pair.lift == pytest.approx((10 / 15) / (18 / 48), abs=1e-4)
    # never the reverse (the power bank came later) nor anything about the sensitive category
    assert not ProductAssociation.objects.filter(antecedent=shop.power_banks).exists()
    assert not ProductAssociation.objects.filter(antecedent=shop.intimate).exists()
    assert result.pairs == 1 and result.created == 1


def test_re_mining_keeps_decisions_and_drops_stale_proposals(shop, buy):
    for _ in range(4):
        c = ClientFactory()
        buy(c, shop.phone, 40)
        buy(c, shop.anker, 38)
    for _ in range(10):
        buy(ClientFactory(), shop.whiskas, 20)
    associations_mine(min_pair_clients=3, at=NOW)
    association_decide(associations=ProductAssociation.objects.all(), accept=True)

    again = associations_mine(min_pair_clients=3, at=NOW)
    assert (again.created, again.updated) == (0, 1)
    assert ProductAssociation.objects.get().status == AssociationStatus.ACCEPTED

    # a higher threshold: the accepted pair stays (a decision is kept), nothing new appears
    associations_mine(min_pair_clients=50, at=NOW)
    assert ProductAssociation.objects.count() == 1


def test_nightly_task_runs_the_service(shop):
    assert mine_associations.run() == {
        "pairs": 0,
        "created": 0,
        "updated": 0,
        "seconds": pytest.approx(0, abs=5),
    }
