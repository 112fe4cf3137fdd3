"""Roles and login hardening: what an operator may not do, and failed-login lockout."""

from __future__ import annotations

from typing import Any

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.test import Client as HttpClient
from django.urls import reverse

from crm.models import AuditLog
from crm.roles import MARKETER, OPERATOR, ROLE_PERMISSIONS
from crm.services import audit_write
from tests.factories import ClientFactory, OfferFactory

pytestmark = pytest.mark.django_db


def staff(role: str, username: str | None = None) -> User:
    user = User.objects.create_user(
        username=username or role.lower(), password="correct-horse", is_staff=True
    )
    user.groups.add(Group.objects.get(name=role))
    return user


def browser(user: User) -> HttpClient:
    http = HttpClient()
    http.force_login(user)
    return http


# Roles ------------------------------------------------------------------------------------------


def test_operator_may_not_export_anonymize_edit_offers_or_read_all_audit() -> None:
    operator = staff(OPERATOR)

    forbidden = [
        "crm.export_clients",
        "crm.export_personal_data",
        "crm.anonymize_client",
        "crm.view_all_auditlog",
        "offers.add_offer",
        "offers.change_offer",
        "offers.delete_offer",
        "offers.change_offervariant",
        "offers.change_promocode",
        "crm.change_client",
    ]
    assert [p for p in forbidden if operator.has_perm(p)] == []
    assert operator.has_perm("crm.view_auditlog")
    assert operator.has_perm("offers.view_offer")
    # The declaration says the same as the database.
    assert not set(forbidden) & set(ROLE_PERMISSIONS[OPERATOR])


def test_marketer_handles_personal_data_requests() -> None:
    marketer = staff(MARKETER)
    for perm in (
        "crm.export_personal_data",
        "crm.anonymize_client",
        "crm.view_auditlog",
        "crm.view_all_auditlog",
    ):
        assert marketer.has_perm(perm), perm


def test_operator_cannot_edit_an_offer_or_export_clients_in_the_admin() -> None:
    offer = OfferFactory(name="Скидка на корм")
    ClientFactory()
    http = browser(staff(OPERATOR))

    change_url = reverse("admin:offers_offer_change", args=[offer.pk])
    assert http.post(change_url, {"name": "Взлом"}).status_code == 403
    assert http.post(reverse("admin:offers_offer_delete", args=[offer.pk])).status_code == 403
    offer.refresh_from_db()
    assert offer.name == "Скидка на корм"
    assert http.get(reverse("admin:crm_client_export")).status_code == 403


def test_operator_sees_only_their_own_audit_entries() -> None:
    client = ClientFactory()
    anna, boris = staff(OPERATOR, "anna"), staff(OPERATOR, "boris")
    marketer = staff(MARKETER)
    own = audit_write(action="card_viewed", client_id=client.pk, actor=anna)
    theirs = audit_write(action="card_viewed", client_id=client.pk, actor=boris)
    system = audit_write(action="client_updated", client_id=client.pk, actor_label="pos")
    url = reverse("admin:crm_auditlog_changelist")

    page = browser(anna).get(url)
    assert page.status_code == 200
    assert [e.pk for e in page.context["cl"].result_list] == [own.pk]
    other_entry = browser(anna).get(reverse("admin:crm_auditlog_change", args=[theirs.pk]))
    assert other_entry.status_code == 302  # "does not exist" for her: back to the index

    page = browser(marketer).get(url)
    assert {e.pk for e in page.context["cl"].result_list} == {own.pk, theirs.pk, system.pk}
    root = User.objects.create_superuser("root", "root@example.ru", "x")
    page = browser(root).get(url)
    assert len(page.context["cl"].result_list) == AuditLog.objects.count()


# Login hardening --------------------------------------------------------------------------------


def login(http: HttpClient, username: str, password: str, ip: str = "10.0.0.1") -> Any:
    return http.post(
        reverse("admin:login"),
        {"username": username, "password": password, "next": "/admin/"},
        REMOTE_ADDR=ip,
    )


def test_admin_login_locks_out_after_repeated_failures() -> None:
    staff(OPERATOR, "olga")
    limit = settings.AXES_FAILURE_LIMIT
    http = HttpClient()

    for _ in range(limit - 1):
        assert login(http, "olga", "wrong").status_code == 200  # the form again, with an error
    locked = login(http, "olga", "wrong")
    assert locked.status_code == 429
    assert "admin/lockout.html" in [t.name for t in locked.templates]
    # Locked: even the right password is refused, and no session is opened.
    response = login(http, "olga", "correct-horse")
    assert response.status_code == 429
    assert "_auth_user_id" not in http.session
    assert AccessAttempt.objects.get(username="olga").failures_since_start >= limit

    # The lockout is per username and address: a colleague behind the same NAT, and Olga from
    # another address, still get in.
    staff(OPERATOR, "pavel")
    assert login(HttpClient(), "pavel", "correct-horse").status_code == 302
    assert login(HttpClient(), "olga", "correct-horse", ip="10.0.0.2").status_code == 302


def test_a_successful_login_resets_the_failure_count() -> None:
    staff(OPERATOR, "olga")
    http = HttpClient()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        login(http, "olga", "wrong")

    assert login(http, "olga", "correct-horse").status_code == 302
    http.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login(http, "olga", "wrong").status_code == 200
    assert login(http, "olga", "correct-horse").status_code == 302


def test_session_and_cookie_settings() -> None:
    assert settings.SESSION_COOKIE_HTTPONLY is True
    assert settings.SESSION_EXPIRE_AT_BROWSER_CLOSE is True
    assert settings.SESSION_COOKIE_AGE <= 12 * 60 * 60
    assert settings.SESSION_COOKIE_SAMESITE == "Lax"
    assert settings.CSRF_COOKIE_SAMESITE == "Lax"
    assert settings.SESSION_COOKIE_SECURE == settings.CSRF_COOKIE_SECURE == settings.SECURE_COOKIES
    assert settings.AUTHENTICATION_BACKENDS[0] == "axes.backends.AxesStandaloneBackend"
    assert settings.MIDDLEWARE[-1] == "axes.middleware.AxesMiddleware"
