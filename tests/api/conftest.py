"""API fixtures: a token-authenticated client per staff role."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import Group, User
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from crm.roles import INTEGRATION, MARKETER, OPERATOR


@pytest.fixture(autouse=True)
def _fresh_throttles() -> None:
    cache.clear()


@pytest.fixture
def api_as(db: None) -> Callable[[str | None], APIClient]:
    """``api_as("Integration")``: an APIClient sending the token of a user in that group;
    ``api_as("superuser")`` a superuser; ``api_as(None)`` no credentials."""

    def make(role: str | None) -> APIClient:
        # Messages are asserted in English; Russian is the default (test_reads checks it).
        api = APIClient(HTTP_ACCEPT_LANGUAGE="en")
        if role is None:
            return api
        if role == "superuser":
            user = User.objects.create_superuser(username="root", password="x")
        else:
            user = User.objects.create_user(username=f"{role.lower()}-api", password="x")
            user.groups.add(Group.objects.get(name=role))
        token = Token.objects.create(user=user)
        api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return api

    return make


@pytest.fixture
def integration(api_as: Callable[[str | None], APIClient]) -> APIClient:
    return api_as(INTEGRATION)


@pytest.fixture
def operator(api_as: Callable[[str | None], APIClient]) -> APIClient:
    return api_as(OPERATOR)


@pytest.fixture
def marketer(api_as: Callable[[str | None], APIClient]) -> APIClient:
    return api_as(MARKETER)
