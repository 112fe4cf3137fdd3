"""Promo codes: generation, upload, single assignment (also under concurrency), redemption."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connection, connections

from offers.models import PromoCode
from offers.services import (
    PromoCodeError,
    promo_code_assign_many,
    promo_code_redeem,
    promo_pool_generate,
    promo_pool_upload,
)
from tests.concurrency import run_together
from tests.factories import ClientFactory, OfferFactory, PromoPoolFactory, PurchaseFactory


@pytest.mark.django_db
def test_generate_codes_with_prefix_and_length():
    pool = PromoPoolFactory(prefix="CAT-", code_length=6)

    assert promo_pool_generate(pool=pool, count=300) == 300

    codes = list(PromoCode.objects.filter(pool=pool).values_list("code", flat=True))
    assert len(set(codes)) == 300
    assert all(c.startswith("CAT-") and len(c) == 10 for c in codes)


@pytest.mark.django_db
def test_upload_skips_duplicates_blanks_and_invalid():
    pool = PromoPoolFactory()
    promo_pool_upload(pool=pool, codes=["A1"])

    result = promo_pool_upload(pool=pool, codes=["A1", "B2", "B2", "", "bad code", "C3\n"])

    assert (result.created, result.duplicates, result.invalid) == (2, 2, 1)
    assert set(PromoCode.objects.values_list("code", flat=True)) == {"A1", "B2", "C3"}


@pytest.mark.django_db
def test_assign_is_idempotent_single_and_stops_when_the_pool_runs_out():
    pool = PromoPoolFactory()
    promo_pool_upload(pool=pool, codes=["C1", "C2", "C3"])
    a, b, c, d = ClientFactory.create_batch(4)

    first = promo_code_assign_many(pool=pool, client_ids=[a.pk, b.pk])
    again = promo_code_assign_many(pool=pool, client_ids=[b.pk, a.pk, c.pk, d.pk])

    assert first == {a.pk: "C1", b.pk: "C2"}
    assert again == {a.pk: "C1", b.pk: "C2", c.pk: "C3"}  # d: the pool is empty
    assert PromoCode.objects.filter(client__isnull=True).count() == 0


@pytest.mark.django_db
def test_redeem_once_by_its_owner_only():
    pool = PromoPoolFactory()
    promo_pool_upload(pool=pool, codes=["R1", "R2"])
    owner, other = ClientFactory.create_batch(2)
    promo_code_assign_many(pool=pool, client_ids=[owner.pk])

    with pytest.raises(PromoCodeError, match="another client"):
        promo_code_redeem(code="R1", client_id=other.pk)
    with pytest.raises(PromoCodeError, match="not been given"):
        promo_code_redeem(code="R2")
    with pytest.raises(PromoCodeError, match="No such"):
        promo_code_redeem(code="NOPE")
    purchase = PurchaseFactory(client=owner)
    redeemed = promo_code_redeem(code=" R1 ", purchase=purchase)
    assert redeemed.redeemed_purchase == purchase
    with pytest.raises(PromoCodeError, match="already been used"):
        promo_code_redeem(code="R1", client_id=owner.pk)
    # a client who redeemed the pool's code gets no second one
    assert promo_code_assign_many(pool=pool, client_ids=[owner.pk]) == {}


@pytest.mark.django_db(transaction=True)
def test_concurrent_assignment_never_hands_a_code_out_twice(postgres: None) -> None:
    # given a pool of 400 codes and 4 workers, each assigning to 150 clients of which 50 are
    # shared with another worker
    pool = PromoPoolFactory()
    promo_pool_generate(pool=pool, count=400)
    clients = [c.pk for c in ClientFactory.create_batch(500)]
    batches = [clients[i * 100 : i * 100 + 150] for i in range(4)]
    barrier = threading.Barrier(4)
    results: list[dict[int, str]] = []
    errors: list[BaseException] = []

    def work(ids: list[int]) -> None:
        try:
            barrier.wait()
            results.append(promo_code_assign_many(pool=pool, client_ids=ids))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(ids,)) for ids in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assigned = list(PromoCode.objects.filter(client__isnull=False).values_list("client_id", "code"))
    per_code = Counter(code for _c, code in assigned)
    per_client = Counter(client for client, _c in assigned)
    assert max(per_code.values()) == 1
    assert max(per_client.values()) == 1
    assert len(assigned) == 400  # 450 distinct clients wanted one; the pool had 400
    # every worker was told the code the client really holds
    held = dict(assigned)
    for result in results:
        for client_id, code in result.items():
            assert held[client_id] == code
    assert connection.vendor == "postgresql"


@pytest.mark.django_db
def test_an_offers_quantity_limit_holds_where_codes_are_handed_out() -> None:
    # given an offer of at most 3 codes and a pool of 10
    pool = PromoPoolFactory()
    promo_pool_generate(pool=pool, count=10)
    offer = OfferFactory(quantity_limit=3, promo_pool=pool)
    first, second = ([c.pk for c in ClientFactory.create_batch(n)] for n in (5, 2))

    # when codes are asked for 5 clients, then again for them and 2 more
    given = promo_code_assign_many(pool=pool, client_ids=first, offer=offer)
    again = promo_code_assign_many(pool=pool, client_ids=first + second, offer=offer)

    # then the first 3 got one each, keep it, and nobody else gets one
    assert sorted(given) == sorted(first[:3])
    assert again == given
    assert PromoCode.objects.filter(offer=offer).count() == 3


@pytest.mark.django_db(transaction=True)
def test_concurrent_assigners_never_pass_an_offers_quantity_limit(postgres: None) -> None:
    # given an offer of at most 4 codes and two assigners of 3 clients each
    pool = PromoPoolFactory()
    promo_pool_generate(pool=pool, count=20)
    offer = OfferFactory(quantity_limit=4, promo_pool=pool)
    clients = [c.pk for c in ClientFactory.create_batch(6)]

    results = run_together(
        lambda: promo_code_assign_many(pool=pool, client_ids=clients[:3], offer=offer),
        lambda: promo_code_assign_many(pool=pool, client_ids=clients[3:], offer=offer),
    )

    assert not [r for r in results if isinstance(r, Exception)]
    assert sorted(len(r) for r in results) == [1, 3]
    assert PromoCode.objects.filter(offer=offer).count() == 4
