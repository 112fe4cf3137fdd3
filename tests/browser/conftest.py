"""End-to-end tests in headless Chromium through Playwright.

Debian's chromium (``apt-get install chromium``; ``.ci/run`` installs it) is driven through its
``executable_path``: no browser download. Without it (or without the ``playwright`` package)
the tests are skipped on a laptop and fail in CI, like every real-service test.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections

from tests.conftest import require_service

CHROMIUM = os.environ.get("LICHNO_CHROMIUM", "/usr/bin/chromium")
TIMEOUT_MS = 15_000


@pytest.fixture
def page(monkeypatch: pytest.MonkeyPatch, settings: Any) -> Iterator[Any]:
    """A fresh English-speaking browser page; the test's ORM calls may run beside Playwright."""
    require_service(
        importlib.util.find_spec("playwright") is not None, "Playwright (pip install playwright)"
    )
    require_service(os.access(CHROMIUM, os.X_OK), f"Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test still reads and writes
    # the database synchronously between browser steps (the live server has its own thread).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    settings.LANGUAGE_CODE = "en"
    with sync_playwright() as playwright:
        # --no-sandbox: CI containers run as root, where Chromium's sandbox cannot start.
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            context = browser.new_context(locale="en-US", timezone_id="Europe/Moscow")
            context.set_default_timeout(TIMEOUT_MS)
            yield context.new_page()
        finally:
            browser.close()
            # The database connection the test opened while Playwright's loop ran is not the
            # one pytest-django closes; left open, it keeps PostgreSQL from dropping the test
            # database at the end of the session.
            connections.close_all()


def admin_login(page: Any, base_url: str, username: str, password: str, next_url: str) -> None:
    """Log in through the admin's own login form and land on ``next_url``."""
    page.goto(f"{base_url}/admin/login/?next={next_url}")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base_url}{next_url}*")
