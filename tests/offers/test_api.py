"""Offers REST API: list offers, a client's next best offers, redeem a promo code."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient

from crm.models import AuditAction, AuditLog
from crm.roles import INTEGRATION, MARKETER, OPERATOR
from offers.models import PromoCode
from offers.services import promo_code_assign_many, promo_pool_upload
from tests.factories import ClientFactory, OfferFactory, OfferVariantFactory, PromoPoolFactory
from tests.offers.conftest import NOW

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_throttles() -> None:
    cache.clear()


@pytest.fixture
def api_as(db: None) -> Callable[[str], APIClient]:
    from django.contrib.auth.models import Group, User
    from rest_framework.authtoken.models import Token

    def make(role: str) -> APIClient:
        user = User.objects.create_user(username=f"{role.lower()}-api", password="x")
        user.groups.add(Group.objects.get(name=role))
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
        return api

    return make


def test_list_offers_with_status_filter(api_as):
    live = OfferFactory(name="Живое")
    OfferVariantFactory(offer=live)
    OfferFactory(name="Черновик", status="draft")
    api = api_as(OPERATOR)

    everything = api.get("/api/v1/offers/")
    only_live = api.get("/api/v1/offers/", {"status": "live"})
    wrong = api.get("/api/v1/offers/", {"status": "nope"})

    assert everything.status_code == 200
    assert {o["name"] for o in everything.json()["results"]} == {"Живое", "Черновик"}
    assert [o["name"] for o in only_live.json()["results"]] == ["Живое"]
    assert only_live.json()["results"][0]["variants"][0]["name"] == "A"
    assert wrong.status_code == 400
    assert wrong.json()["errors"][0]["field"] == "status"


def test_client_next_best_offers_with_reasons(api_as, shop, buy, django_assert_max_num_queries):
    client = ClientFactory(first_name="Анна")
    shift = (timezone.now() - NOW).days
    for days in (88, 58, 28):
        buy(client, shop.whiskas, days - shift)
    offer = OfferFactory(strategy="replenish", priority=70)
    OfferVariantFactory(offer=offer)
    api = api_as(OPERATOR)

    with django_assert_max_num_queries(25):
        response = api.get(f"/api/v1/clients/{client.pk}/offers/")

    assert response.status_code == 200
    (best,) = response.json()
    assert best["offer_id"] == offer.pk
    assert best["reason"].startswith("Вы покупали «Whiskas")
    assert best["products"][0]["sku"] == shop.whiskas.sku
    assert best["texts"]["sms"]["encoding"] == "UCS-2"
    assert best["texts"]["sms"]["parts"] >= 1
    assert api.get("/api/v1/clients/999999/offers/").status_code == 404
    assert api.get(f"/api/v1/clients/{client.pk}/offers/", {"limit": "x"}).status_code == 400


def test_redeem_a_promo_code(api_as):
    pool = PromoPoolFactory()
    promo_pool_upload(pool=pool, codes=["API-1"])
    client = ClientFactory()
    promo_code_assign_many(pool=pool, client_ids=[client.pk])
    till = api_as(INTEGRATION)

    ok = till.post(
        "/api/v1/promo-codes/redeem/", {"code": "API-1", "client_id": client.pk}, format="json"
    )
    again = till.post("/api/v1/promo-codes/redeem/", {"code": "API-1"}, format="json")
    unknown = till.post("/api/v1/promo-codes/redeem/", {"code": "NOPE"}, format="json")

    assert ok.status_code == 200
    assert ok.json()["redeemed_at"] is not None
    assert PromoCode.objects.get(code="API-1").redeemed_at is not None
    assert again.status_code == 400
    assert again.json()["errors"] == [
        # Russian is the default language of the API's messages
        {"index": None, "field": "code", "message": "Этот промокод уже использован."}
    ]
    assert unknown.status_code == 400


def test_redeem_needs_the_permission(api_as):
    operator = api_as(OPERATOR)
    assert (
        operator.post("/api/v1/promo-codes/redeem/", {"code": "X"}, format="json").status_code
        == 403
    )
    assert (
        api_as(MARKETER)
        .post("/api/v1/promo-codes/redeem/", {"code": "X"}, format="json")
        .status_code
        == 400
    )


def test_reading_a_clients_next_best_offers_is_logged(api_as):
    client = ClientFactory(first_name="Анна")
    api = api_as(OPERATOR)

    assert api.get(f"/api/v1/clients/{client.pk}/offers/").status_code == 200
    assert api.get("/api/v1/clients/999999/offers/").status_code == 404

    entries = list(AuditLog.objects.values_list("action", "client_id", "changes"))
    assert entries == [(AuditAction.CARD_VIEWED, client.pk, {"via": "api-offers"})]
