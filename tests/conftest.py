"""Shared fixtures: real-service gates and factories.

A test that needs a real service asks for its fixture. Without the service it is skipped on a
laptop; with LICHNO_REQUIRE_SERVICES=1 (set by .ci/run) it fails instead, so CI skips nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import settings
from django.db import connection


def require_service(available: bool, what: str) -> None:
    if available:
        return
    message = f"{what} is not available"
    if settings.LICHNO_REQUIRE_SERVICES:
        pytest.fail(f"{message}, and LICHNO_REQUIRE_SERVICES forbids skipping", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def postgres() -> None:
    """The test runs only on PostgreSQL (concurrency, SKIP LOCKED, COPY)."""
    require_service(connection.vendor == "postgresql", "PostgreSQL (set DATABASE_URL)")


@pytest.fixture
def celery_broker() -> Iterator[str]:
    """The configured broker, checked reachable."""
    from crm.celery import app

    url = app.conf.broker_url
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
        ok = True
    except Exception:  # noqa: BLE001 - any connection failure means "not available"
        ok = False
    require_service(ok, f"Celery broker {url}")
    yield url
