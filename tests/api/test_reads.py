"""Read endpoints, permissions per group, schema and docs."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.management import call_command
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema

from crm.models import AuditLog
from crm.services import consent_record
from tests.factories import (
    ClientFactory,
    LoyaltyAccountFactory,
    ProductFactory,
    PurchaseFactory,
    PurchaseItemFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def client_with_history():
    client = ClientFactory(external_id="C1", phone="+79123456789", email="anna@example.ru")
    ClientFactory(external_id="C2", phone="+79120000000")
    LoyaltyAccountFactory(client=client, balance=120)
    purchase = PurchaseFactory(client=client, external_id="R1", total=Decimal("80.00"))
    PurchaseItemFactory(
        purchase=purchase, product=ProductFactory(sku="MILK"), unit_price=Decimal("80.00")
    )
    consent_record(
        client=client,
        channel="sms",
        purpose="marketing",
        action="granted",
        source="store",
        wording_version="v1",
    )
    return client


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("phone=8 (912) 345-67-89", ["C1"]),
        ("external_id=C2", ["C2"]),
        ("email=ANNA@example.ru", ["C1"]),
        ("", ["C2", "C1"]),
    ],
)
def test_clients_are_found_by_phone_external_id_and_email(
    operator, client_with_history, query, expected
):
    response = operator.get(f"/api/v1/clients/?{query}")

    assert response.status_code == 200
    assert [c["external_id"] for c in response.json()["results"]] == expected


def test_a_bad_phone_filter_is_a_400(operator):
    response = operator.get("/api/v1/clients/?phone=abc")

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "phone"


def test_the_card_has_profile_consents_loyalty_and_purchases_and_is_audited(
    integration, client_with_history, django_assert_max_num_queries
):
    with django_assert_max_num_queries(10):
        response = integration.get(f"/api/v1/clients/{client_with_history.pk}/")

    assert response.status_code == 200
    card = response.json()
    assert card["profile"]["phone"] == "+79123456789"
    assert card["consents"] == [
        {
            "channel": "sms",
            "purpose": "marketing",
            "is_granted": True,
            "changed_at": card["consents"][0]["changed_at"],
            "source": "store",
            "wording_version": "v1",
        }
    ]
    assert card["loyalty"]["balance"] == 120
    assert card["recent_purchases"][0]["items"][0]["sku"] == "MILK"
    assert card["recent_messages"] == []
    assert AuditLog.objects.filter(action="card_viewed", client=client_with_history).count() == 1


def test_an_unknown_card_is_404_in_the_common_format(operator):
    response = operator.get("/api/v1/clients/999999999999/")

    assert response.status_code == 404
    assert set(response.json()) == {"detail", "errors"}


def test_purchases_filter_by_client_and_products_list(operator, client_with_history):
    other = PurchaseFactory(external_id="R2")

    mine = operator.get(f"/api/v1/purchases/?client={client_with_history.pk}").json()
    theirs = operator.get(f"/api/v1/purchases/?client={other.client_id}").json()
    products = operator.get("/api/v1/products/?sku=MILK").json()

    assert [p["external_id"] for p in mine["results"]] == ["R1"]
    assert [p["external_id"] for p in theirs["results"]] == ["R2"]
    assert [p["sku"] for p in products["results"]] == ["MILK"]


def test_lists_are_paginated_by_cursor(operator):
    ClientFactory.create_batch(3)

    first = operator.get("/api/v1/clients/?page_size=2").json()
    second = operator.get(first["next"]).json()

    assert len(first["results"]) == 2 and len(second["results"]) == 1


@pytest.mark.parametrize(
    ("role", "read", "write"),
    [
        ("Integration", 200, 200),
        ("Operator", 200, 403),
        ("Marketer", 200, 403),
        ("superuser", 200, 200),
        (None, 401, 401),
    ],
)
def test_permissions_per_group(api_as, role, read, write):
    api = api_as(role)

    assert api.get("/api/v1/clients/").status_code == read
    assert api.get("/api/v1/products/").status_code == read
    assert api.get("/api/v1/purchases/").status_code == read
    for url in ("clients", "products", "purchases", "events", "consents"):
        response = api.post(f"/api/v1/{url}/bulk/", [], format="json")
        assert response.status_code == write, url


def test_a_wrong_token_is_401(api_as):
    api = api_as(None)
    api.credentials(HTTP_AUTHORIZATION="Token nope")

    response = api.get("/api/v1/clients/")

    assert response.status_code == 401
    assert set(response.json()) == {"detail", "errors"}


def test_throttling_answers_429(integration, settings):
    from rest_framework.throttling import UserRateThrottle

    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK}
    original = UserRateThrottle.THROTTLE_RATES
    UserRateThrottle.THROTTLE_RATES = {**original, "user": "2/min"}
    try:
        codes = [integration.get("/api/v1/products/").status_code for _ in range(3)]
    finally:
        UserRateThrottle.THROTTLE_RATES = original

    assert codes == [200, 200, 429]


def test_the_schema_is_valid_openapi_and_documents_every_endpoint():
    schema = SchemaGenerator().get_schema(request=None, public=True)

    validate_schema(schema)
    for path in (
        "/api/v1/clients/bulk/",
        "/api/v1/products/bulk/",
        "/api/v1/purchases/bulk/",
        "/api/v1/events/bulk/",
        "/api/v1/consents/bulk/",
        "/api/v1/clients/",
        "/api/v1/clients/{id}/",
        "/api/v1/products/",
        "/api/v1/purchases/",
    ):
        assert path in schema["paths"], path
    bulk = schema["paths"]["/api/v1/purchases/bulk/"]["post"]
    assert set(bulk["responses"]) >= {"200", "400", "413"}


def test_spectacular_validate_passes(tmp_path):
    call_command("spectacular", "--validate", "--file", str(tmp_path / "s.yml"))


def test_swagger_ui_is_served_without_a_cdn(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("u", password="x"))

    page = client.get("/api/docs/")
    schema = client.get("/api/schema/")

    assert page.status_code == 200 and schema.status_code == 200
    html = page.content.decode()
    assert "cdn.jsdelivr" not in html and "swagger-ui" in html
