"""A call-center operator's day in a real browser: log in, find the caller by the number as
they dictate it, read the suggested offer and its reason, record how the call went."""

from __future__ import annotations

from typing import Any

import pytest

from crm.models import Event, EventType
from tests.browser.conftest import admin_login
from tests.card.conftest import make_rich_client, user_in

PASSWORD = "Operator-Pass-2026"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_operator_finds_the_caller_reads_the_offer_and_records_the_outcome(
    live_server: Any, page: Any
) -> None:
    from playwright.sync_api import expect

    from crm.card.selectors import catalog_cache_clear

    catalog_cache_clear()
    rich = make_rich_client()
    user_in("Operator", "operator-e2e", password=PASSWORD)

    admin_login(page, live_server.url, "operator-e2e", PASSWORD, "/card/search")
    page.fill("#card-q", "8 (912) 345-67-89")
    page.press("#card-q", "Enter")

    # One match: the card itself, with the offer and the reason to read aloud.
    page.wait_for_url(f"{live_server.url}/card/{rich.client.pk}/")
    expect(page.locator(".card-head h1")).to_have_text("Смирнова Анна Петровна")
    expect(page.locator(".card-phone")).to_have_text("+7 912 345-67-89")
    offer = page.locator(".card-offer").first
    expect(offer.locator("h3")).to_have_text("Корм со скидкой")
    expect(offer.locator(".card-reason")).to_have_text(
        "Мы подобрали это предложение специально для вас."
    )
    expect(offer.get_by_role("button", name="Send by SMS now")).to_be_visible()

    page.get_by_label("interested").check()
    page.fill("#card-note", "Просит прислать SMS")
    page.get_by_role("button", name="Record the outcome").click()

    expect(page.locator(".messagelist")).to_contain_text("Call outcome recorded: interested.")
    expect(page.locator(".card-events")).to_contain_text("Просит прислать SMS")
    event = Event.objects.get(client=rich.client, type=EventType.CALL_OUT)
    assert event.payload["outcome"] == "interested"
    assert event.payload["operator"] == "operator-e2e"
