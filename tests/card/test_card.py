"""The card page and its JSON: every section, bounded queries, an audit entry per view."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client as HttpClient
from django.urls import reverse

from crm.models import AuditAction, AuditLog
from tests.card.conftest import Rich, make_rich_client, user_in

pytestmark = pytest.mark.django_db


def test_card_shows_every_section_of_a_rich_client(operator_http: HttpClient, rich: Rich) -> None:
    response = operator_http.get(reverse("card:card", args=[rich.client.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    for text in [
        "Смирнова Анна Петровна",
        "Екатеринбург",
        "Asia/Yekaterinburg",  # local time zone next to the local time
        "Золото",
        "1250 points",
        "+7 912 345-67-89",
        "SMS",  # consents per channel
        "web form",  # consent source
        "v1",  # wording version
        "Мурка",  # family
        "садоводство",  # interests
        "evening",  # preferred time
        "Lifetime spend",
        "4,500.00",  # 5 purchases x 900
        "Average check",
        "Buys every",
        "Корм Purina One, 1,5 кг",  # purchase history and the cart events
        "added to cart",
        "Сообщение 0",  # message history (its text on hover)
        "delivered",
        "Record the outcome",
        reverse("card:offers", args=[rich.client.pk]),  # the offers panel fills in from here
    ]:
        assert text in page, text
    assert response.context["card"]["client"]["age"] >= 35
    assert page.count("<h1") == 1  # the client's name, once


def test_offers_panel_shows_the_offer_with_its_reason(
    operator_http: HttpClient, rich: Rich
) -> None:
    panel = operator_http.get(reverse("card:offers", args=[rich.client.pk])).content.decode()

    assert "Корм со скидкой" in panel
    assert "Мы подобрали это предложение специально для вас." in panel
    assert "Корм Purina One, 1,5 кг" in panel
    assert "Send by SMS now" in panel


def test_card_json_is_the_same_data(operator_http: HttpClient, rich: Rich) -> None:
    response = operator_http.get(reverse("card:card-json", args=[rich.client.pk]))

    assert response.status_code == 200
    data = response.json()
    assert data["client"]["phone"] == "+79123456789"
    assert data["client"]["time_zone"] == "Asia/Yekaterinburg"
    assert data["loyalty"] == {"tier": "Золото", "balance": 1250, "rolling_spend": "0.00"}
    assert [(c["channel"], c["is_granted"]) for c in data["consents"]] == [
        ("sms", True),
        ("call", True),
        ("email", None),
    ]
    assert data["family"]["pets"] == [{"kind": "cat", "kind_display": "cat", "name": "Мурка"}]
    assert data["figures"]["purchases"] == 5
    assert data["figures"]["lifetime_spend"] == "4500.00"
    assert data["figures"]["average_check"] == "900.00"
    assert data["figures"]["cadence_days"] == 7.0
    assert data["purchases"]["pages"] == 1 and len(data["purchases"]["items"]) == 5
    assert len(data["messages"]) == 5
    offers = operator_http.get(data["offers_url"]).json()["offers"]
    assert [o["offer"] for o in offers] == ["Корм со скидкой"]
    assert offers[0]["reason"] == "Мы подобрали это предложение специально для вас."
    assert offers[0]["can_sms"] is True


def test_purchases_are_paginated(operator_http: HttpClient) -> None:
    rich = make_rich_client(purchases=25, messages=0)

    second = operator_http.get(reverse("card:card-json", args=[rich.client.pk]), {"page": 2})

    purchases = second.json()["purchases"]
    assert (purchases["page"], purchases["pages"], purchases["total"]) == (2, 3, 25)
    assert [p["external_id"] for p in purchases["items"]] == [
        f"R-{rich.client.pk}-{i}" for i in range(10, 20)
    ]


@pytest.mark.parametrize("size", [5, 300])
def test_card_queries_are_bounded_whatever_the_history(
    size: int, operator_http: HttpClient, django_assert_max_num_queries: Any
) -> None:
    rich = make_rich_client(purchases=size, messages=size)
    operator_http.get(reverse("card:card", args=[rich.client.pk]))  # warm the catalog snapshot

    with django_assert_max_num_queries(20):
        page = operator_http.get(reverse("card:card", args=[rich.client.pk]))
    with django_assert_max_num_queries(20):
        data = operator_http.get(reverse("card:card-json", args=[rich.client.pk]))
    with django_assert_max_num_queries(20):
        offers = operator_http.get(reverse("card:offers", args=[rich.client.pk]))

    assert page.status_code == data.status_code == offers.status_code == 200
    assert "Корм со скидкой" in offers.content.decode()
    assert len(data.json()["messages"]) == min(size, 20)
    assert len(data.json()["purchases"]["items"]) == min(size, 10)


def test_each_view_writes_one_audit_entry(
    operator: Any, operator_http: HttpClient, rich: Rich
) -> None:
    operator_http.get(reverse("card:card", args=[rich.client.pk]))
    operator_http.get(reverse("card:card-json", args=[rich.client.pk]))
    operator_http.get(reverse("card:card", args=[rich.client.pk]), {"page": 2})

    entries = list(
        AuditLog.objects.order_by("id").values_list("action", "client_id", "actor_id", "changes")
    )
    assert entries == [
        (AuditAction.CARD_VIEWED, rich.client.pk, operator.pk, {"via": "card"}),
        (AuditAction.CARD_VIEWED, rich.client.pk, operator.pk, {"via": "card-json"}),
        (AuditAction.CARD_VIEWED, rich.client.pk, operator.pk, {"via": "card"}),
    ]


def test_reading_the_offers_panel_is_logged_like_the_card(
    operator: Any, operator_http: HttpClient, rich: Rich
) -> None:
    # The panel's reasons are read off the client's purchases (invariant 9)
    operator_http.get(reverse("card:offers", args=[rich.client.pk]))
    operator_http.get(reverse("card:offers-json", args=[rich.client.pk]))

    entries = list(
        AuditLog.objects.order_by("id").values_list("action", "client_id", "actor_id", "changes")
    )
    assert entries == [
        (AuditAction.CARD_VIEWED, rich.client.pk, operator.pk, {"via": "card-offers"}),
        (AuditAction.CARD_VIEWED, rich.client.pk, operator.pk, {"via": "card-offers-json"}),
    ]


def test_staff_without_the_operator_group_cannot_open_a_card(rich: Rich) -> None:
    http = HttpClient()
    http.force_login(user_in(None, "clerk"))

    assert http.get(reverse("card:card", args=[rich.client.pk])).status_code == 403
    assert http.get(reverse("card:card-json", args=[rich.client.pk])).status_code == 403
    assert http.get(reverse("card:search"), {"q": "Смирнова"}).status_code == 403
    assert not AuditLog.objects.exists()


def test_anonymous_users_are_sent_to_the_login(rich: Rich) -> None:
    response = HttpClient().get(reverse("card:card", args=[rich.client.pk]))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_marketers_may_read_cards_but_not_act(rich: Rich) -> None:
    http = HttpClient()
    http.force_login(user_in("Marketer", "marketer1"))

    page = http.get(reverse("card:card", args=[rich.client.pk]))

    assert page.status_code == 200
    panel = http.get(reverse("card:offers", args=[rich.client.pk])).content.decode()
    assert "Корм со скидкой" in panel and "Send by SMS now" not in panel
    outcome = http.post(
        reverse("card:outcome", args=[rich.client.pk]), {"outcome": "interested", "note": ""}
    )
    assert outcome.status_code == 403


def test_unknown_client_is_404(operator_http: HttpClient) -> None:
    assert operator_http.get(reverse("card:card", args=[999999])).status_code == 404
    assert operator_http.get(reverse("card:card-json", args=[999999])).status_code == 404
