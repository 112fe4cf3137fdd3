"""Every admin page opens for a superuser; roles see exactly what they should."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import cast

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.test import Client as HttpClient
from django.urls import reverse
from django.utils import timezone

from crm.models import (
    AuditLog,
    Child,
    Consent,
    ConsentEvent,
    Event,
    ImportJob,
    Interest,
    Pet,
    Purchase,
    PurchaseItem,
)
from crm.roles import INTEGRATION, MARKETER, OPERATOR
from crm.services import ConsentChange, consent_record_many
from loyalty.models import PointsEntry
from tests.factories import ClientFactory, LoyaltyAccountFactory, ProductFactory, PurchaseFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def world() -> dict[str, object]:
    """One row of every model, so every change page has something to open."""
    client = ClientFactory()
    Pet.objects.create(client=client, kind="cat", name="Мурка")
    Child.objects.create(client=client, birth_year=2019)
    client.interests.add(Interest.objects.create(name="рыбалка"))
    product = ProductFactory()
    purchase = PurchaseFactory(client=client, total=Decimal("500.00"))
    PurchaseItem.objects.create(
        purchase=purchase,
        product=product,
        unit_price=Decimal("500.00"),
        client=client,
        purchased_at=purchase.purchased_at,
    )
    Event.objects.create(
        client=client, type="cart_add", occurred_at=timezone.now(), product=product
    )
    consent_record_many(
        changes=[
            ConsentChange(
                client_id=client.pk,
                channel="sms",
                purpose="marketing",
                action="granted",
                source="store",
                wording_version="v1",
                occurred_at=timezone.now() - dt.timedelta(days=1),
            )
        ]
    )
    account = LoyaltyAccountFactory(client=client)
    PointsEntry.objects.create(account=account, kind="earn", points=5, purchase=purchase)
    AuditLog.objects.create(action="card_viewed", client=client)
    ImportJob.objects.create(kind="clients", file="imports/clients.csv", original_name="c.csv")
    return {"client": client, "purchase": purchase}


def staff(role: str) -> User:
    user = User.objects.create_user(username=role.lower(), password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return user


def browser(user: User) -> HttpClient:
    http = HttpClient()
    http.force_login(user)
    return http


def test_every_changelist_add_and_change_page_opens_for_a_superuser(world: object) -> None:
    root = User.objects.create_superuser("root", "root@example.ru", "x")
    if apps.is_installed("rest_framework.authtoken"):
        from rest_framework.authtoken.models import Token

        Token.objects.create(user=root)
    http = browser(root)
    without_rows = []
    for model, model_admin in admin.site._registry.items():
        meta = model._meta
        base = f"admin:{meta.app_label}_{meta.model_name}"
        response = http.get(reverse(f"{base}_changelist"))
        assert response.status_code == 200, (meta.label, "changelist", response.status_code)
        assert "?e=1" not in response.get("Location", "")
        if model_admin.has_add_permission(response.wsgi_request):
            assert http.get(reverse(f"{base}_add")).status_code == 200, (meta.label, "add")
        obj = model._default_manager.order_by("pk").first()
        if obj is not None:
            response = http.get(reverse(f"{base}_change", args=[obj.pk]))
            assert response.status_code == 200, (meta.label, "change")
        else:
            without_rows.append(meta.label)
    # The fixture covers every model of crm and loyalty; other apps test their own pages.
    assert [label for label in without_rows if label.split(".")[0] in ("crm", "loyalty")] == []


def test_client_changelist_finds_phone_written_as_people_write_it(world: dict) -> None:
    http = browser(User.objects.create_superuser("root", "root@example.ru", "x"))
    client = world["client"]
    digits = str(client.phone)[2:]
    written = f"8 ({digits[:3]}) {digits[3:6]}-{digits[6:8]}-{digits[8:]}"

    response = http.get(reverse("admin:crm_client_changelist"), {"q": written})

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [client]


def test_client_changelist_queries_do_not_grow_with_rows(
    world: object, django_assert_max_num_queries: object
) -> None:
    ClientFactory.create_batch(30)
    http = browser(User.objects.create_superuser("root", "root@example.ru", "x"))
    with django_assert_max_num_queries(12):  # type: ignore[operator]
        assert http.get(reverse("admin:crm_client_changelist")).status_code == 200


def test_consent_added_on_the_client_page_goes_through_the_service(world: dict) -> None:
    user = staff(OPERATOR)
    client = world["client"]
    http = browser(User.objects.create_superuser("root", "root@example.ru", "x"))
    page = http.get(reverse("admin:crm_client_change", args=[client.pk]))
    assert page.status_code == 200
    del user

    response = http.post(
        reverse("admin:crm_consentevent_add"),
        {
            "client": client.pk,
            "channel": "sms",
            "purpose": "marketing",
            "action": "withdrawn",
            "source": "call_center",
            "occurred_at_0": timezone.localdate().isoformat(),
            "occurred_at_1": timezone.localtime().strftime("%H:%M:%S"),
            "wording_version": "v2",
            "evidence": "Клиент попросил не писать",
        },
    )

    assert response.status_code == 302, response.content[:2000]
    state = Consent.objects.get(client=client, channel="sms")
    assert state.is_granted is False
    actor = ConsentEvent.objects.filter(client=client).latest("id").actor
    assert actor is not None
    assert actor.username == "root"


def test_operator_reads_clients_and_records_consent_but_changes_nothing_else(world: dict) -> None:
    http = browser(staff(OPERATOR))
    client = world["client"]

    assert http.get(reverse("admin:crm_client_changelist")).status_code == 200
    assert http.get(reverse("admin:crm_client_change", args=[client.pk])).status_code == 200
    assert http.get(reverse("admin:crm_consentevent_add")).status_code == 200
    assert http.get(reverse("admin:crm_client_add")).status_code == 403
    assert http.get(reverse("admin:crm_product_add")).status_code == 403
    assert http.get(reverse("admin:loyalty_tier_add")).status_code == 403
    assert http.get(reverse("admin:auth_user_changelist")).status_code == 403
    assert http.get(reverse("admin:django_celery_beat_periodictask_changelist")).status_code == 403
    response = http.post(
        reverse("admin:crm_client_change", args=[client.pk]), {"last_name": "Хакер"}
    )
    assert response.status_code == 403
    client.refresh_from_db()
    assert client.last_name != "Хакер"
    purchase = Purchase.objects.get()
    assert http.post(reverse("admin:crm_purchase_delete", args=[purchase.pk])).status_code == 403


def test_marketer_edits_catalog_but_not_users_or_ledger(world: object) -> None:
    http = browser(staff(MARKETER))
    assert http.get(reverse("admin:crm_product_add")).status_code == 200
    assert http.get(reverse("admin:loyalty_tier_add")).status_code == 200
    assert http.get(reverse("admin:auth_user_changelist")).status_code == 403
    assert http.get(reverse("admin:loyalty_pointsentry_add")).status_code == 403


def test_integration_role_exists_and_has_no_admin_access(world: object) -> None:
    user = User.objects.create_user(username="pos", password="x")
    user.groups.add(Group.objects.get(name=INTEGRATION))
    assert user.has_perm("crm.add_purchase")
    assert not user.has_perm("crm.delete_client")
    response = browser(user).get(reverse("admin:crm_client_changelist"))
    assert response.status_code == 302  # not staff: sent to the login page


def test_language_switch_is_in_the_admin_header(world: object) -> None:
    http = browser(User.objects.create_superuser("root", "root@example.ru", "x"))
    page = http.get(reverse("admin:index"))
    assert b'name="language"' in page.content
    assert "Клиенты".encode() in page.content or b"Clients" in page.content

    http.post(reverse("set_language"), {"language": "en", "next": "/admin/"})
    assert b"Log out" in http.get(reverse("admin:index")).content


def _form_data(page: object) -> dict[str, object]:
    """What a browser would post back from a change page: every form and inline as rendered."""
    data: dict[str, object] = {}
    context = page.context  # type: ignore[attr-defined]
    forms = [context["adminform"].form]
    for inline in context["inline_admin_formsets"]:
        formset = inline.formset
        data.update(
            {f"{formset.prefix}-{k}": v for k, v in formset.management_form.initial.items()}
        )
        forms.extend(formset.forms)
    for form in forms:
        for field in form:
            value = field.value()
            if value is None or field.field.disabled:
                continue
            if isinstance(value, (list, tuple)):
                data[field.html_name] = [str(v) for v in value]
            elif isinstance(value, dt.datetime):
                data[f"{field.html_name}_0"] = value.date().isoformat()
                data[f"{field.html_name}_1"] = value.strftime("%H:%M:%S")
            elif isinstance(value, bool):
                if value:
                    data[field.html_name] = "on"
            else:
                data[field.html_name] = str(value)
    return data


def test_saving_the_client_page_with_a_consent_row_records_it(world: dict) -> None:
    client = world["client"]
    http = browser(User.objects.create_superuser("root", "root@example.ru", "x"))
    url = reverse("admin:crm_client_change", args=[client.pk])
    data = _form_data(http.get(url))
    prefix = "consent_events"
    row = int(cast(int, data[f"{prefix}-INITIAL_FORMS"]))  # the management form's initial count
    data[f"{prefix}-TOTAL_FORMS"] = str(row + 1)
    data.update(
        {
            f"{prefix}-{row}-channel": "email",
            f"{prefix}-{row}-purpose": "marketing",
            f"{prefix}-{row}-action": "granted",
            f"{prefix}-{row}-source": "call_center",
            f"{prefix}-{row}-occurred_at_0": timezone.localdate().isoformat(),
            f"{prefix}-{row}-occurred_at_1": timezone.localtime().strftime("%H:%M:%S"),
            f"{prefix}-{row}-wording_version": "v3",
        }
    )
    data["first_name"] = "Анна"

    response = http.post(url, data)

    assert response.status_code == 302, response.content.decode()[:3000]
    client.refresh_from_db()
    assert client.first_name == "Анна"
    assert Consent.objects.get(client=client, channel="email").is_granted
