"""Bulk upsert endpoints: happy paths, row errors, idempotency, atomic mode, limits, queries."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from crm import bulk
from crm.models import (
    AuditLog,
    Brand,
    Category,
    Client,
    Consent,
    ConsentEvent,
    Event,
    Product,
    Purchase,
    PurchaseItem,
)
from crm.phones import normalize_phone
from tests.factories import ClientFactory, ProductFactory

pytestmark = pytest.mark.django_db

CLIENTS = "/api/v1/clients/bulk/"
PRODUCTS = "/api/v1/products/bulk/"
PURCHASES = "/api/v1/purchases/bulk/"
EVENTS = "/api/v1/events/bulk/"
CONSENTS = "/api/v1/consents/bulk/"


def post(api: APIClient, url: str, body: object, **params: str) -> tuple[int, dict]:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    response = api.post(
        url + (f"?{query}" if query else ""),
        data=json.dumps(body),
        content_type="application/json",
    )
    return response.status_code, response.json()


def counts(created: int = 0, updated: int = 0, unchanged: int = 0, errors: list | None = None):
    return {"created": created, "updated": updated, "unchanged": unchanged, "errors": errors or []}


# Clients ---------------------------------------------------------------------------------------


def test_clients_are_created_with_normalized_phone_and_derived_time_zone(integration):
    status, body = post(
        integration,
        CLIENTS,
        [
            {
                "external_id": "C1",
                "last_name": "Петрова",
                "first_name": "Анна",
                "phone": "8 (912) 345-67-89",
                "email": " Anna@Example.RU ",
                "city": "Екатеринбург",
                "birth_date": "1990-05-01",
                "attributes": {"card": "0042"},
            }
        ],
    )

    assert (status, body) == (200, counts(created=1))
    client = Client.objects.get(external_id="C1")
    assert client.phone.as_e164 == "+79123456789"
    assert client.email == "anna@example.ru"
    assert str(client.time_zone) == "Asia/Yekaterinburg"
    assert client.birth_date == dt.date(1990, 5, 1)
    assert client.attributes == {"card": "0042"}
    assert client.source == "api"
    assert AuditLog.objects.filter(action="client_created").count() == 1


def test_clients_update_only_the_fields_sent_and_resend_changes_nothing(integration):
    ClientFactory(external_id="C1", first_name="Иван", city="Москва", email="a@example.ru")

    first = post(integration, CLIENTS, [{"external_id": "C1", "first_name": "Пётр"}])
    again = post(integration, CLIENTS, [{"external_id": "C1", "first_name": "Пётр"}])

    assert first == (200, counts(updated=1))
    assert again == (200, counts(unchanged=1))
    client = Client.objects.get(external_id="C1")
    assert (client.first_name, client.city, client.email) == ("Пётр", "Москва", "a@example.ru")
    audit = AuditLog.objects.get(action="client_updated", client=client)
    assert audit.changes == {"fields": ["first_name"], "via": "bulk"}


def test_an_unparsable_phone_fails_its_row_only(integration):
    status, body = post(
        integration,
        CLIENTS,
        [
            {"external_id": "C1", "phone": "+7 912 345 67 89"},
            {"external_id": "C2", "phone": "call me maybe"},
            {"external_id": "C3", "gender": "x"},
            {"first_name": "no key"},
            "not an object",
            {"external_id": "C1", "first_name": "twice"},
        ],
    )

    assert status == 200
    assert body["created"] == 1
    assert [(e["index"], e["field"]) for e in body["errors"]] == [
        (1, "phone"),
        (2, "gender"),
        (3, "external_id"),
        (4, ""),
        (5, "external_id"),
    ]
    assert list(Client.objects.values_list("external_id", flat=True)) == ["C1"]


def test_atomic_mode_stores_nothing_when_a_row_fails(integration):
    status, body = post(
        integration,
        CLIENTS,
        [{"external_id": "C1"}, {"external_id": "C2", "phone": "12"}],
        atomic="true",
    )

    assert status == 400
    assert body["created"] == 0
    assert body["errors"] == [
        {"index": 1, "field": "phone", "message": "Not a valid phone number: 12."}
    ]
    assert "detail" in body
    assert not Client.objects.exists()


def test_atomic_mode_stores_a_clean_batch(integration):
    assert post(integration, CLIENTS, [{"external_id": "C1"}], atomic="true") == (
        200,
        counts(created=1),
    )


def test_hostile_strings_are_row_errors_not_server_errors(integration):
    status, body = post(
        integration,
        CLIENTS,
        [
            {"external_id": "C\x001"},
            {"external_id": "C2", "attributes": {"k": "v\x00"}},
            {"external_id": "C3", "birth_date": "0001-01-01"},
            {"external_id": "C4", "time_zone": "Mars/Olympus"},
            {"external_id": "x" * 65},
            {"external_id": 12345, "first_name": True},
        ],
    )

    assert status == 200
    assert [e["index"] for e in body["errors"]] == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("size", [10, 1000])
def test_client_batch_queries_do_not_grow_with_the_batch(integration, size):
    ClientFactory.create_batch(3, external_id=None)
    rows = [{"external_id": f"C{i}", "phone": f"+7916{i:07d}"} for i in range(size)]
    post(integration, CLIENTS, rows)  # half of the next batch exists, half is new
    rows += [{"external_id": f"N{i}", "city": "Казань"} for i in range(size)]
    rows[0]["first_name"] = "changed"

    with CaptureQueriesContext(connection) as captured:
        status, body = post(integration, CLIENTS, rows)

    assert (status, body["created"], body["updated"]) == (200, size, 1)
    assert len(captured) <= 16


# Products --------------------------------------------------------------------------------------


def test_products_create_categories_and_brands_and_then_match_by_sku(integration):
    rows = [
        {
            "sku": "A-1",
            "name": "Корм",
            "category": "pet-food",
            "category_name": "Корма",
            "brand": "Мурр",
            "price": "199.90",
            "cost": 120,
        },
        {"sku": "A-2", "name": "Лежак", "category": "pet-food", "price": 1500},
    ]

    assert post(integration, PRODUCTS, rows) == (200, counts(created=2))
    assert post(integration, PRODUCTS, rows) == (200, counts(unchanged=2))
    assert post(integration, PRODUCTS, [{"sku": "A-2", "price": "1490.00"}]) == (
        200,
        counts(updated=1),
    )
    category = Category.objects.get(slug="pet-food")
    assert (category.name, category.path) == ("Корма", f"/{category.pk}/")
    product = Product.objects.get(sku="A-1")
    assert (product.brand, product.price, product.cost) == (
        Brand.objects.get(name="Мурр"),
        Decimal("199.90"),
        Decimal("120.00"),
    )
    assert Product.objects.get(sku="A-2").price == Decimal("1490.00")


def test_a_new_product_needs_name_category_and_price(integration):
    status, body = post(
        integration,
        PRODUCTS,
        [{"sku": "A-1", "name": "x", "category": "c"}, {"sku": "A-2", "price": "-1"}],
    )

    assert status == 200
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(0, "price"), (1, "price")]
    assert not Product.objects.exists()


# Purchases -------------------------------------------------------------------------------------


@pytest.fixture
def shop() -> dict[str, object]:
    return {
        "client": ClientFactory(external_id="C1", phone="+79123456789"),
        "milk": ProductFactory(sku="MILK", price=Decimal("80.00")),
        "bread": ProductFactory(sku="BREAD", price=Decimal("45.50")),
    }


def purchase(external_id: str = "R1", **extra: object) -> dict[str, object]:
    return {
        "external_id": external_id,
        "client_phone": "8 912 345-67-89",
        "purchased_at": "2025-03-01T12:30:00+03:00",
        "store": "Тверская",
        "items": [
            {"sku": "MILK", "quantity": 2},
            {"sku": "BREAD", "quantity": "1", "unit_price": "40.00", "discount": "5.00"},
        ],
        **extra,
    }


def test_purchases_are_stored_with_denormalized_items_and_queue_accrual(
    integration: APIClient,
    shop: dict[str, Any],
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queued: list[list[int]] = []

    class FakeTask:
        @staticmethod
        def delay(purchase_ids: list[int]) -> None:
            queued.append(purchase_ids)

        @staticmethod
        def apply_async(*, kwargs: dict, **options: object) -> None:
            queued.append(kwargs["purchase_ids"])

    monkeypatch.setattr("loyalty.tasks.accrue_points", FakeTask)

    with django_capture_on_commit_callbacks(execute=True):
        status, body = post(integration, PURCHASES, [purchase()])

    assert (status, body) == (200, counts(created=1))
    stored = Purchase.objects.get(external_id="R1")
    assert stored.client == shop["client"]
    assert stored.total == Decimal("195.00")  # 2 x 80 + 40 - 5
    assert stored.purchased_at == dt.datetime(2025, 3, 1, 9, 30, tzinfo=dt.UTC)
    items = list(
        stored.items.order_by("id").values_list(
            "product__sku", "client_id", "purchased_at", "unit_price"
        )
    )
    assert items == [
        ("MILK", shop["client"].pk, stored.purchased_at, Decimal("80.00")),
        ("BREAD", shop["client"].pk, stored.purchased_at, Decimal("40.00")),
    ]
    assert queued == [[stored.pk]]


def test_resending_purchases_changes_nothing_and_a_changed_one_replaces_its_items(
    integration, shop
):
    post(integration, PURCHASES, [purchase("R1"), purchase("R2")])

    assert post(integration, PURCHASES, [purchase("R1"), purchase("R2")]) == (
        200,
        counts(unchanged=2),
    )
    changed = purchase("R2", items=[{"sku": "BREAD", "quantity": 3}])
    assert post(integration, PURCHASES, [purchase("R1"), changed]) == (
        200,
        counts(updated=1, unchanged=1),
    )
    r2 = Purchase.objects.get(external_id="R2")
    assert list(r2.items.values_list("product__sku", "quantity")) == [("BREAD", Decimal("3"))]
    assert r2.total == Decimal("136.50")
    assert PurchaseItem.objects.count() == 3


def test_purchase_errors_name_the_row_and_the_item(integration, shop):
    status, body = post(
        integration,
        PURCHASES,
        [
            purchase("R1", items=[{"sku": "MILK"}, {"sku": "NOPE"}]),
            purchase("R2", client_phone="+7 999 000-00-00"),
            purchase("R3", purchased_at="yesterday"),
            purchase("R4", items=[{"sku": "MILK", "quantity": 0}]),
            purchase("R5", items=[{"sku": "MILK", "discount": "500"}]),
            purchase("R6", items=[], total=None),
            {**purchase("R7"), "client_phone": None},
            purchase("R8", total="12.5", items=[]),
        ],
    )

    assert status == 200
    assert body["created"] == 1
    assert [(e["index"], e["field"]) for e in body["errors"]] == [
        (0, "items[1].sku"),
        (1, "client_phone"),
        (2, "purchased_at"),
        (3, "items[0].quantity"),
        (4, "items"),
        (5, "total"),
        (6, "client_external_id"),
    ]
    assert Purchase.objects.get().total == Decimal("12.50")


def test_purchases_atomic_mode(integration, shop):
    status, body = post(
        integration,
        PURCHASES,
        [purchase("R1"), purchase("R2", client_external_id="X")],
        atomic="1",
    )

    assert status == 400
    assert body["errors"][0]["field"] == "client_external_id"
    assert not Purchase.objects.exists()


@pytest.mark.parametrize("size", [10, 1000])
def test_purchase_batch_queries_do_not_grow_with_the_batch(integration, shop, size):
    rows = [purchase(f"R{i}") for i in range(size)]
    post(integration, PURCHASES, rows[: size // 2])
    rows[0]["store"] = "changed"

    with CaptureQueriesContext(connection) as captured:
        status, body = post(integration, PURCHASES, rows)

    assert (status, body["created"], body["updated"]) == (200, size - size // 2, 1)
    assert len(captured) <= 24


# Events and consents ---------------------------------------------------------------------------


def test_events_are_appended_once(integration, shop):
    rows = [
        {
            "client_external_id": "C1",
            "type": "cart_add",
            "occurred_at": "2025-03-01T10:00:00Z",
            "sku": "MILK",
            "payload": {"qty": 1},
        },
        {"client_phone": "+79123456789", "type": "app_open", "occurred_at": "2025-03-01T10:05:00Z"},
    ]

    assert post(integration, EVENTS, rows) == (200, counts(created=2))
    assert post(integration, EVENTS, rows) == (200, counts(unchanged=2))
    assert Event.objects.filter(product=shop["milk"], payload={"qty": 1}).count() == 1
    status, body = post(integration, EVENTS, [{**rows[0], "type": "teleport"}])
    assert body["errors"][0]["field"] == "type"


def test_consents_go_to_the_history_and_derive_the_state(integration, shop):
    rows = [
        {
            "client_external_id": "C1",
            "channel": "sms",
            "action": "granted",
            "wording_version": "v3",
            "occurred_at": "2025-03-01T10:00:00+03:00",
        },
        {
            "client_external_id": "C1",
            "channel": "sms",
            "action": "withdrawn",
            "wording_version": "v3",
            "occurred_at": "2025-03-02T10:00:00+03:00",
        },
    ]

    assert post(integration, CONSENTS, rows) == (200, counts(created=2))
    assert post(integration, CONSENTS, rows) == (200, counts(unchanged=2))
    assert ConsentEvent.objects.count() == 2
    consent = Consent.objects.get(client=shop["client"], channel="sms")
    assert (consent.is_granted, consent.source) == (False, "api")
    event = ConsentEvent.objects.order_by("id").first()
    assert event.actor.username == "integration-api"


def test_a_future_consent_is_a_row_error(integration, shop):
    status, body = post(
        integration,
        CONSENTS,
        [
            {
                "client_external_id": "C1",
                "channel": "sms",
                "action": "granted",
                "wording_version": "v3",
                "occurred_at": "2099-01-01T00:00:00Z",
            }
        ],
    )

    assert status == 200
    assert body["errors"][0]["field"] == "occurred_at"
    assert not ConsentEvent.objects.exists()


# Request-level errors --------------------------------------------------------------------------


@pytest.mark.parametrize("url", [CLIENTS, PRODUCTS, PURCHASES, EVENTS, CONSENTS])
def test_more_than_ten_thousand_objects_is_413(integration, url):
    status, body = post(integration, url, [{}] * (bulk.MAX_BATCH_SIZE + 1))

    assert status == 413
    assert body["errors"][0]["message"].startswith("A batch holds at most 10000")


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b'{"external_id": "C1"}', b"[NaN]", b"\xff\xfe", b'"text"', b"1" * 5000],
)
def test_bad_json_is_400_in_the_common_error_format(integration, raw):
    response = integration.post(CLIENTS, data=raw, content_type="application/json")

    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"detail", "errors"}
    assert body["errors"][0]["index"] is None


def test_a_body_over_the_limit_is_413(integration, settings):
    settings.API_MAX_BODY_BYTES = 100

    status, body = post(integration, CLIENTS, [{"external_id": "C" * 200}])

    assert status == 413


def test_atomic_flag_must_be_a_boolean(integration):
    status, body = post(integration, CLIENTS, [], atomic="maybe")

    assert status == 400
    assert body["errors"] == [
        {"index": None, "field": "atomic", "message": "Must be true or false."}
    ]


# Services --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "+79123456789",
        "+74951234567",
        "+14155552671",
        "+390612345678",
        "+78123456789",
        "+79999999999",
        "+7000",
        "+70001234567",
        "+442079460000",
        "+4407911123456",
        "+971501234567",
    ],
)
def test_fast_phone_path_agrees_with_normalize_phone(raw):
    assert bulk.phone_e164(raw) == normalize_phone(raw)


def test_the_service_refuses_an_oversized_batch():
    with pytest.raises(bulk.BatchTooLarge):
        bulk.client_upsert_many(rows=[{}] * (bulk.MAX_BATCH_SIZE + 1))


def test_row_errors_are_in_russian_unless_the_client_asks_otherwise(integration):
    del integration.defaults["HTTP_ACCEPT_LANGUAGE"]

    status, body = post(integration, CLIENTS, [{"external_id": "C2", "phone": "12"}])

    assert status == 200
    assert body["errors"] == [
        {"index": 0, "field": "phone", "message": "Неверный номер телефона: 12."}
    ]
    assert not Client.objects.exists()
