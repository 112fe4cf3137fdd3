"""A call-center operator's day in a real browser: log in, find the caller by the number as
they dictate it, read the suggested offer and its reason, record how the call went. Then the
marketer's side: the campaign's results page with its figures, verdict, charts and export."""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import re
from decimal import Decimal
from typing import Any
from urllib.parse import urljoin

import pytest

from crm.models import Channel, Client, Event, EventType
from crm.roles import MARKETER, OPERATOR
from tests.browser.conftest import admin_login
from tests.card.conftest import make_rich_client, user_in

PASSWORD = "Operator-Pass-2026"
MARKETER_PASSWORD = "Marketer-Pass-2026"
DAY = dt.timedelta(days=1)


@pytest.mark.django_db(transaction=True)
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


# The marketer ------------------------------------------------------------------------------------

_keys = itertools.count()


def _message(
    client: Client, run: Any, status: str, at: dt.datetime, channel: str = Channel.SMS
) -> Any:
    from messaging.models import Message, MessageStatus

    control = status == MessageStatus.CONTROL
    return Message.objects.create(
        client=client,
        channel=channel,
        run=run,
        offer=run.campaign.offer,
        recipient="" if control else "+79160000000",
        text="" if control else "Скидка 10%",
        scheduled_for=at,
        status=status,
        sent_at=None if control else at,
        delivered_at=at if status == MessageStatus.DELIVERED else None,
        idempotency_key=f"e2e:{next(_keys)}",
    )


def _buy(client: Client, at: dt.datetime, product: Any) -> Any:
    from tests.factories import PurchaseFactory, PurchaseItemFactory

    purchase = PurchaseFactory(client=client, purchased_at=at, total=Decimal("900"))
    PurchaseItemFactory(
        purchase=purchase, product=product, unit_price=Decimal("900"), quantity=Decimal("1")
    )
    return purchase


@pytest.mark.django_db(transaction=True)
def test_marketer_reads_the_campaign_report_with_its_chart_and_export(
    live_server: Any, page: Any
) -> None:
    from playwright.sync_api import expect

    from messaging.models import Attribution, CampaignRun, MessageStatus, RunStatus
    from messaging.services.attribution import attribution_recompute
    from tests.messaging.conftest import NOW, make_world

    # A planned run, sent: three treated messages and a holdout of two; one treated client and
    # one from the control group buy the offer's product within the window.
    world = make_world(5)
    run = CampaignRun.objects.create(
        campaign=world.campaign, started_at=NOW, status=RunStatus.PLANNED
    )
    c = world.clients
    _message(c[0], run, MessageStatus.DELIVERED, NOW)
    _message(c[1], run, MessageStatus.DELIVERED, NOW)
    _message(c[2], run, MessageStatus.SENT, NOW, channel=Channel.EMAIL)
    _message(c[3], run, MessageStatus.CONTROL, NOW)
    _message(c[4], run, MessageStatus.CONTROL, NOW)
    _buy(c[0], NOW + DAY, world.product)
    _buy(c[3], NOW + 2 * DAY, world.product)
    attribution_recompute(run=run, now=NOW + 30 * DAY)
    assert sorted(Attribution.objects.values_list("is_control", flat=True)) == [False, True]

    user_in(MARKETER, "marketer-e2e", password=MARKETER_PASSWORD)
    user_in(OPERATOR, "operator-e2e", password=PASSWORD)
    report_path = f"/reports/campaigns/{world.campaign.pk}/"

    admin_login(page, live_server.url, "marketer-e2e", MARKETER_PASSWORD, report_path)
    expect(page.locator("#content-main")).to_be_visible()
    # Pick the run in the selector: the form submits itself.
    page.select_option("#run", str(run.pk))
    page.wait_for_url(re.compile(rf"{re.escape(report_path)}\?run={run.pk}$"))

    expect(page.locator(".breadcrumbs")).to_contain_text(world.campaign.name)
    expect(page.locator(".lichno-headline")).to_contain_text("too little data to judge yet")
    figures = page.locator("table.lichno-results").first

    def figure(label: str) -> Any:
        row = figures.locator("tbody tr").filter(
            has=page.locator("td:first-child", has_text=re.compile(rf"^{label}$"))
        )
        return row.locator("td")

    expect(figure("messages")).to_have_text(["messages", "3", "2"])
    expect(figure("sent")).to_have_text(["sent", "3", "—"])
    expect(figure("delivered")).to_have_text(["delivered", "2", "—"])
    expect(figure("conversions")).to_have_text(["conversions", "1", "1"])
    expect(figure("revenue")).to_have_text(["revenue", "900.00", "900.00"])

    charts = page.locator(".lichno-charts svg")
    expect(charts).to_have_count(3)  # over time, funnel, variants and control
    expect(charts.first).to_be_visible()
    expect(page.locator(".lichno-charts figure").nth(1).locator("svg rect").first).to_be_attached()

    csv_link = page.get_by_role("link", name="Export CSV")
    href = csv_link.get_attribute("href")
    assert href == f"?run={run.pk}&format=csv"
    export = page.request.get(urljoin(page.url, href))
    assert export.status == 200
    assert export.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(export.body().decode("utf-8-sig"))))
    header = rows[0]
    treated = next(r for r in rows if r[1] == "treated")
    assert treated[header.index("messages")] == "3"
    assert treated[header.index("conversions")] == "1"

    # An operator works in the same admin but may not see results.
    page.context.clear_cookies()
    admin_login(page, live_server.url, "operator-e2e", PASSWORD, "/card/search")
    refused = page.goto(f"{live_server.url}{report_path}")
    assert refused is not None and refused.status == 403
