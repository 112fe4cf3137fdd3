"""Many batches at once (``propose_batches``): on PostgreSQL outside a transaction, threads with
connections of their own work on consecutive batches; the proposals are the ones ``propose``
gives batch by batch, in the same order, and nothing is left running."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import pytest

from offers import engine
from offers.engine import batches_in_parallel, propose, propose_batches
from offers.models import CrossSellRule
from tests.factories import OfferFactory, OfferVariantFactory
from tests.offers.conftest import NOW
from tests.offers.test_set_based import _population


def _key(p: Any) -> tuple[Any, ...]:
    texts = tuple(sorted((channel, t.text) for channel, t in p.texts.items()))
    return (p.client_id, p.offer_id, p.is_control, p.variant_id, p.product_ids, p.reason, texts)


def _offers(shop: Any) -> list[Any]:
    CrossSellRule.objects.create(source_category=shop.phones, target_category=shop.power_banks)
    offers = [
        OfferFactory(strategy="replenish", channels=["sms"], benefit_value=Decimal("7.5")),
        OfferFactory(strategy="cross_sell", channels=["sms"], benefit_value=Decimal("7.5")),
    ]
    for offer in offers:
        OfferVariantFactory(offer=offer)
    return offers


def _propose_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("propose-")]


@pytest.mark.usefixtures("postgres")
@pytest.mark.django_db(transaction=True)  # the workers' connections see committed rows only
def test_batches_in_parallel_give_what_one_by_one_gives(shop: Any, buy: Any) -> None:
    clients = _population(shop, buy, n=40, seed=5)
    offers = _offers(shop)
    ids = sorted(c.pk for c in clients)
    batches = [ids[start : start + 6] for start in range(0, len(ids), 6)]
    options: dict[str, Any] = {"offers": offers, "channel": "sms", "at": NOW}

    assert batches_in_parallel()
    together = list(propose_batches(batches, parallel=2, **options))
    one_by_one = [propose(batch, **options) for batch in batches]

    texts = [p.texts["sms"].text for r in one_by_one for p in r if not p.is_control]
    assert len(texts) >= 5 and all("7,5%" in text for text in texts)  # rendered SMS texts
    # Same proposals, texts and reasons, in the same order
    assert [[_key(p) for p in r] for r in together] == [[_key(p) for p in r] for r in one_by_one]
    assert not _propose_threads()


@pytest.mark.django_db
def test_inside_a_transaction_the_batches_run_one_by_one(shop: Any, buy: Any) -> None:
    clients = _population(shop, buy, n=12, seed=5)
    offers = _offers(shop)
    ids = sorted(c.pk for c in clients)
    batches = [ids[:6], ids[6:]]

    assert not batches_in_parallel()  # another connection would not see these rows
    got = propose_batches(batches, parallel=2, offers=offers, at=NOW)
    assert not _propose_threads()
    assert [[_key(p) for p in r] for r in got] == [
        [_key(p) for p in propose(b, offers=offers, at=NOW)] for b in batches
    ]


@pytest.mark.usefixtures("postgres")
@pytest.mark.django_db(transaction=True)
def test_an_error_reaches_the_reader_after_the_batches_before_it(
    shop: Any, buy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = engine.propose

    def failing(batch: list[int], **options: Any) -> list[Any]:
        if batch == [3]:
            raise ValueError("batch 3 failed")
        return real(batch, **options)

    monkeypatch.setattr(engine, "propose", failing)
    results = propose_batches([[1], [2], [3], [4], [5]], parallel=2, at=NOW)
    assert next(results) == [] and next(results) == []
    with pytest.raises(ValueError, match="batch 3 failed"):
        next(results)
    assert not _propose_threads()


@pytest.mark.usefixtures("postgres")
@pytest.mark.django_db(transaction=True)
def test_a_reader_that_stops_early_stops_the_threads_and_reads_no_further() -> None:
    read: list[int] = []

    def batches() -> Any:
        for n in range(100):
            read.append(n)
            yield [n]

    results = propose_batches(batches(), parallel=2, at=NOW)
    assert next(results) == []
    results.close()
    assert not _propose_threads()
    assert len(read) <= 4  # the batch read and at most two ahead (plus one being taken)
