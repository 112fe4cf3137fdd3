"""Client, catalog and purchase services."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from crm.models import AuditLog, Category, Client, PurchaseItem
from crm.services import audit_write, category_save, client_save, purchase_finalize
from tests.factories import CategoryFactory, ClientFactory, PurchaseFactory, PurchaseItemFactory

pytestmark = pytest.mark.django_db


def test_new_client_gets_time_zone_from_city_and_lowercase_email_and_audit_row() -> None:
    client = Client(last_name="Иванова", city="Новосибирск", email="Anna@Mail.RU")

    client_save(client=client, changed_fields=["last_name", "city", "email"])

    client.refresh_from_db()
    assert str(client.time_zone) == "Asia/Novosibirsk"
    assert client.email == "anna@mail.ru"
    entry = AuditLog.objects.get()
    assert (entry.action, entry.client_id) == ("client_created", client.pk)
    assert entry.changes == {"fields": ["city", "email", "last_name", "time_zone"]}


def test_explicit_time_zone_wins_over_city() -> None:
    client = ClientFactory(city="Москва")
    client.city = "Владивосток"
    client.time_zone = "Europe/Kaliningrad"

    client_save(client=client, changed_fields=["city", "time_zone"])

    client.refresh_from_db()
    assert str(client.time_zone) == "Europe/Kaliningrad"


def test_unknown_city_keeps_time_zone() -> None:
    client = ClientFactory(city="Москва")
    client.city = "Мухосранск"
    client_save(client=client, changed_fields=["city"])
    client.refresh_from_db()
    assert str(client.time_zone) == "Europe/Moscow"


def test_category_paths_follow_moves_of_a_subtree() -> None:
    pets = CategoryFactory(name="Зоотовары")
    food = CategoryFactory(name="Корм", parent=pets)
    cat_food = CategoryFactory(name="Корм для кошек", parent=food)
    home = CategoryFactory(name="Дом")
    assert cat_food.path == f"/{pets.pk}/{food.pk}/{cat_food.pk}/"

    food.parent = home
    category_save(category=food)

    paths = dict(Category.objects.values_list("pk", "path"))
    assert paths[food.pk] == f"/{home.pk}/{food.pk}/"
    assert paths[cat_food.pk] == f"/{home.pk}/{food.pk}/{cat_food.pk}/"
    assert paths[pets.pk] == f"/{pets.pk}/"


def test_category_cannot_move_into_its_own_subtree() -> None:
    root = CategoryFactory()
    child = CategoryFactory(parent=root)
    root.parent = child
    with pytest.raises(ValidationError):
        category_save(category=root)
    assert Category.objects.get(pk=root.pk).parent_id is None


def test_purchase_finalize_copies_client_and_time_to_items_and_sums_total() -> None:
    purchase = PurchaseFactory(total=Decimal("0"))
    other = ClientFactory()
    PurchaseItemFactory(purchase=purchase, unit_price=Decimal("100.00"), quantity=Decimal("2"))
    PurchaseItemFactory(
        purchase=purchase,
        unit_price=Decimal("50.00"),
        discount=Decimal("5.00"),
        client=other,  # stale denormalized copy, e.g. after the purchase was re-assigned
    )

    purchase_finalize(purchase=purchase)

    purchase.refresh_from_db()
    assert purchase.total == Decimal("245.00")
    assert set(PurchaseItem.objects.values_list("client_id", "purchased_at")) == {
        (purchase.client_id, purchase.purchased_at)
    }


def test_audit_log_refuses_updates_in_the_database() -> None:
    from django.db import DatabaseError, transaction

    entry = audit_write(action="card_viewed", changes={"via": "test"})

    with pytest.raises(DatabaseError), transaction.atomic():
        AuditLog.objects.filter(pk=entry.pk).update(action="client_anonymized")

    entry.refresh_from_db()
    assert entry.action == "card_viewed"
