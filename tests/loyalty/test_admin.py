"""loyalty admin: bounded changelists, a read-only ledger, adjustments through the service."""

from __future__ import annotations

import pytest
from django.urls import reverse

from crm.models import AuditAction, AuditLog
from loyalty.models import EntryKind, LoyaltyAccount, PointsEntry
from loyalty.services import points_accrue_for_purchases

pytestmark = pytest.mark.django_db


@pytest.fixture
def accounts(tiers, make_client, make_purchase):
    for _ in range(15):
        client = make_client()
        make_purchase(client, "1000")
        make_purchase(client, "2000")
    points_accrue_for_purchases()
    return LoyaltyAccount.objects.order_by("id")


@pytest.mark.parametrize(
    "url_name",
    [
        "admin:loyalty_tier_changelist",
        "admin:loyalty_loyaltyaccount_changelist",
        "admin:loyalty_pointsentry_changelist",
    ],
)
def test_changelists_render_in_bounded_queries(
    url_name, accounts, admin_client, django_assert_max_num_queries
):
    with django_assert_max_num_queries(12):
        response = admin_client.get(reverse(url_name))
    assert response.status_code == 200


def test_account_search_by_last_name_and_external_id(accounts, admin_client):
    account = accounts.last()  # Ivanov15: no other last name contains it
    url = reverse("admin:loyalty_loyaltyaccount_changelist")

    for term in (account.client.last_name, account.client.external_id):
        response = admin_client.get(url, {"q": term})
        assert list(response.context["cl"].result_list) == [account]


def test_account_page_shows_recent_ledger_in_bounded_queries(
    accounts, admin_client, django_assert_max_num_queries
):
    account = accounts.first()
    with django_assert_max_num_queries(15):
        response = admin_client.get(
            reverse("admin:loyalty_loyaltyaccount_change", args=[account.id])
        )
    assert response.status_code == 200
    assert b"adjust_points" in response.content


def test_adjusting_points_from_the_account_page(accounts, admin_client, admin_user):
    # given
    account = accounts.first()
    url = reverse("admin:loyalty_loyaltyaccount_change", args=[account.id])
    inline = "entries-"
    data = {
        "adjust_points": "-10",
        "adjust_reason": "returned goods",
        f"{inline}TOTAL_FORMS": "0",
        f"{inline}INITIAL_FORMS": "0",
        f"{inline}MIN_NUM_FORMS": "0",
        f"{inline}MAX_NUM_FORMS": "0",
    }

    # when
    response = admin_client.post(url, data)

    # then
    assert response.status_code == 302, response.context and response.context["errors"]
    account.refresh_from_db()
    assert account.balance == 20
    assert list(account.entries.order_by("id").values_list("kind", "points")) == [
        (EntryKind.EARN, 10),
        (EntryKind.EARN, 20),
        (EntryKind.ADJUST, -10),
    ]
    audit = AuditLog.objects.get(action=AuditAction.POINTS_ADJUSTED)
    assert (audit.actor_id, audit.changes["points"]) == (admin_user.id, -10)


def test_adjusting_below_zero_is_refused_by_the_form(accounts, admin_client):
    account = accounts.first()
    url = reverse("admin:loyalty_loyaltyaccount_change", args=[account.id])

    response = admin_client.post(
        url,
        {
            "adjust_points": "-31",
            "adjust_reason": "too much",
            "entries-TOTAL_FORMS": "0",
            "entries-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 200
    assert "adjust_points" in response.context["adminform"].form.errors
    account.refresh_from_db()
    assert (account.balance, account.entries.count()) == (30, 2)


def test_ledger_is_read_only(accounts, admin_client):
    entry = PointsEntry.objects.first()

    assert admin_client.get(reverse("admin:loyalty_pointsentry_add")).status_code == 403
    assert (
        admin_client.post(
            reverse("admin:loyalty_pointsentry_change", args=[entry.id]), {"points": 999}
        ).status_code
        == 403
    )
    assert (
        admin_client.post(
            reverse("admin:loyalty_pointsentry_delete", args=[entry.id]), {"post": "yes"}
        ).status_code
        == 403
    )
    entry.refresh_from_db()
    assert entry.points == 10
