"""Schemathesis: fuzz every crm endpoint from its own OpenAPI schema; no input may cause a 500.

Bounded (a few dozen examples per operation, no shrinking time limit) so it runs in CI.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import schemathesis
from django.contrib.auth.models import Group, User
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token

from crm.roles import INTEGRATION
from tests.factories import ClientFactory, ProductFactory

EXAMPLES = 15


def _schema() -> dict:
    raw = OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True))
    return json.loads(raw)


schema = schemathesis.openapi.from_dict(_schema()).include(
    path_regex=r"^/api/v1/(clients|products|purchases|events|consents)/"
)
schema.app = get_wsgi_application()


@pytest.fixture
def token(db: None) -> Iterator[str]:
    """An Integration token, some data to find, and the WSGI app sharing the test transaction
    (like Django's test client: no connection closing between requests)."""
    user = User.objects.create_user("fuzz")
    user.groups.add(Group.objects.get(name=INTEGRATION))
    ClientFactory(external_id="C1", phone="+79123456789")
    ProductFactory(sku="SKU-1")
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield Token.objects.create(user=user).key
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_input_makes_the_api_fail(case: schemathesis.Case, token: str) -> None:
    response = case.call(headers={"Authorization": f"Token {token}"})

    assert response.status_code < 500, (case.as_curl_command(), response.text[:2000])
    if response.status_code >= 400:
        body = response.json()
        assert set(body) >= {"detail", "errors"}, body
