"""Results: attribution of purchases to messages, reports with uplift, charts, exports, access."""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import math
import statistics
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Group as AuthGroup
from django.contrib.auth.models import User
from django.test import Client as HttpClient
from django.urls import reverse
from django.utils import timezone
from openpyxl import load_workbook

from crm.models import (
    Channel,
    Client,
    ConsentAction,
    ConsentPurpose,
    ConsentSource,
    Product,
    Purchase,
)
from crm.roles import MARKETER, OPERATOR
from crm.services import ConsentChange, consent_record_many
from messaging.charts import bar_chart, line_chart
from messaging.models import (
    Attribution,
    AttributionScope,
    CallbackRequest,
    CallbackSource,
    CampaignRun,
    LinkClick,
    Message,
    MessageStatus,
    OfferAttributionRule,
    RunStatus,
)
from messaging.reports import (
    Verdict,
    campaign_report,
    dashboard,
    offer_report,
    report_tables,
    two_proportion_test,
    variant_report,
)
from messaging.services.attribution import attribution_recompute
from tests.factories import (
    CategoryFactory,
    ClientFactory,
    OfferVariantFactory,
    ProductFactory,
    PurchaseFactory,
    PurchaseItemFactory,
)
from tests.messaging.conftest import NOW, World, make_world

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)
_keys = itertools.count()


def make_run(world: World, at: dt.datetime = NOW) -> CampaignRun:
    return CampaignRun.objects.create(
        campaign=world.campaign, started_at=at, status=RunStatus.PLANNED
    )


def message(
    client: Client,
    *,
    run: CampaignRun | None = None,
    offer: Any = None,
    status: str = MessageStatus.DELIVERED,
    at: dt.datetime = NOW,
    channel: str = Channel.SMS,
    variant: Any = None,
    products: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> Message:
    # A failed message was refused by the gateway: never sent.
    sent = status not in (
        MessageStatus.CONTROL,
        MessageStatus.PLANNED,
        MessageStatus.CANCELLED,
        MessageStatus.FAILED,
    )
    return Message.objects.create(
        client=client,
        channel=channel,
        run=run,
        offer=offer if offer is not None else (run.campaign.offer if run else None),
        variant=variant,
        recipient="" if status == MessageStatus.CONTROL else "+79160000000",
        text="" if status == MessageStatus.CONTROL else "Скидка 10%",
        products=products or [],
        scheduled_for=at,
        status=status,
        sent_at=at if sent else None,
        delivered_at=at if status == MessageStatus.DELIVERED else None,
        idempotency_key=f"test:{next(_keys)}",
        **extra,
    )


def buy(
    client: Client,
    at: dt.datetime,
    product: Product,
    *,
    price: str = "900",
    quantity: str = "1",
    discount: str = "0",
    more: list[tuple[Product, str]] = (),  # type: ignore[assignment]
) -> Purchase:
    lines = [(product, price, quantity, discount)] + [(p, pr, "1", "0") for p, pr in more]
    total = sum(Decimal(pr) * Decimal(q) - Decimal(d) for _p, pr, q, d in lines)
    purchase = PurchaseFactory(client=client, purchased_at=at, total=total)
    for p, pr, q, d in lines:
        PurchaseItemFactory(
            purchase=purchase,
            product=p,
            unit_price=Decimal(pr),
            quantity=Decimal(q),
            discount=Decimal(d),
        )
    return purchase


def recompute() -> None:
    attribution_recompute(since=NOW - 30 * DAY, until=NOW + 30 * DAY, now=NOW + 30 * DAY)


def credited() -> dict[int, int]:
    """purchase id -> message id."""
    return dict(Attribution.objects.values_list("purchase_id", "message_id"))


# Attribution ------------------------------------------------------------------------------------


def test_a_purchase_of_the_offer_product_within_the_window_is_credited_with_money() -> None:
    world = make_world(2)
    run = make_run(world)
    alice, bob = world.clients
    sent = message(alice, run=run)
    other = ProductFactory(price=Decimal("100"), cost=Decimal("50"))
    world.product.cost = Decimal("600")
    world.product.save()
    inside = buy(alice, NOW + 2 * DAY, world.product, price="900", quantity="2", discount="90",
                 more=[(other, "100")])  # fmt: skip
    late = buy(alice, NOW + 7 * DAY + dt.timedelta(seconds=1), world.product)
    before = buy(alice, NOW - dt.timedelta(minutes=1), world.product)
    not_messaged = buy(bob, NOW + DAY, world.product)

    recompute()

    assert credited() == {inside.pk: sent.pk}
    row = Attribution.objects.get()
    # Only the offer's lines: 2 x 900 - 90; margin over cost 600 x 2; the discount given.
    assert (row.revenue, row.margin, row.discount) == (
        Decimal("1710.00"),
        Decimal("510.00"),
        Decimal("90.00"),
    )
    assert (row.client_id, row.offer_id, row.is_control) == (alice.pk, world.offer.pk, False)
    assert row.purchased_at == inside.purchased_at
    assert {late.pk, before.pk, not_messaged.pk}.isdisjoint(credited())


def test_offer_scope_counts_category_subtree_and_message_products_any_scope_everything() -> None:
    world = make_world(3)
    run = make_run(world)
    a, b, c = world.clients
    pets = CategoryFactory()
    cats = CategoryFactory(parent=pets)
    from crm.services import category_save

    category_save(category=cats)
    world.offer.fixed_category = pets
    world.offer.save()
    in_subtree = ProductFactory(category=cats)
    named = ProductFactory()
    unrelated = ProductFactory()
    message(a, run=run)
    message(b, run=run, products=[{"id": named.pk, "name": named.name}])
    message(c, run=run)
    p_subtree = buy(a, NOW + DAY, in_subtree)
    p_named = buy(b, NOW + DAY, named)
    p_unrelated = buy(c, NOW + DAY, unrelated, price="250")

    recompute()
    assert set(credited()) == {p_subtree.pk, p_named.pk}

    OfferAttributionRule.objects.create(offer=world.offer, scope=AttributionScope.ANY)
    recompute()
    assert set(credited()) == {p_subtree.pk, p_named.pk, p_unrelated.pk}
    # "Any purchase" credits the whole receipt.
    assert Attribution.objects.get(purchase=p_unrelated).revenue == Decimal("250.00")


def test_the_window_is_configurable_per_offer() -> None:
    world = make_world(1)
    run = make_run(world)
    (alice,) = world.clients
    message(alice, run=run)
    day_ten = buy(alice, NOW + 10 * DAY, world.product)
    recompute()
    assert credited() == {}

    OfferAttributionRule.objects.create(offer=world.offer, window_days=14)
    recompute()
    assert set(credited()) == {day_ten.pk}


def test_last_touch_wins_and_failed_or_pending_messages_earn_nothing() -> None:
    world = make_world(1)
    (alice,) = world.clients
    first = message(alice, run=make_run(world, NOW - 3 * DAY), at=NOW - 3 * DAY)
    latest = message(alice, run=make_run(world, NOW - DAY), at=NOW - DAY)
    message(alice, run=make_run(world), at=NOW - dt.timedelta(hours=1),
            status=MessageStatus.FAILED)  # fmt: skip
    message(alice, run=make_run(world), at=NOW - dt.timedelta(hours=2),
            status=MessageStatus.PLANNED)  # fmt: skip
    early = buy(alice, NOW - 2 * DAY, world.product)
    later = buy(alice, NOW, world.product)

    recompute()

    assert credited() == {early.pk: first.pk, later.pk: latest.pk}


def test_control_records_earn_control_conversions_the_same_way() -> None:
    world = make_world(2)
    run = make_run(world)
    treated, holdout = world.clients
    message(treated, run=run)
    control = message(holdout, run=run, status=MessageStatus.CONTROL)
    bought = buy(holdout, NOW + DAY, world.product)
    buy(holdout, NOW + 8 * DAY, world.product)  # outside the window

    recompute()

    assert credited() == {bought.pk: control.pk}
    assert Attribution.objects.get().is_control is True


def test_recompute_is_idempotent_and_follows_changes() -> None:
    world = make_world(2)
    run = make_run(world)
    alice, bob = world.clients
    m_alice = message(alice, run=run)
    m_bob = message(bob, run=run, status=MessageStatus.SENT)
    p_alice = buy(alice, NOW + DAY, world.product)
    p_bob = buy(bob, NOW + DAY, world.product)

    first = attribution_recompute(run=run, now=NOW + 30 * DAY)
    rows = list(Attribution.objects.order_by("purchase_id").values_list(
        "purchase_id", "message_id", "revenue"))  # fmt: skip
    second = attribution_recompute(run=run, now=NOW + 30 * DAY)

    assert (first.created, second.deleted, second.created) == (2, 2, 2)
    assert rows == list(Attribution.objects.order_by("purchase_id").values_list(
        "purchase_id", "message_id", "revenue"))  # fmt: skip
    assert rows == [
        (p_alice.pk, m_alice.pk, Decimal("900.00")),
        (p_bob.pk, m_bob.pk, Decimal("900.00")),
    ]
    # A late delivery report: Bob's SMS never arrived; the nightly recompute takes it back.
    Message.objects.filter(pk=m_bob.pk).update(status=MessageStatus.UNDELIVERED)
    attribution_recompute(run=run.pk, now=NOW + 30 * DAY)
    assert credited() == {p_alice.pk: m_alice.pk}


def test_recompute_touches_only_its_window() -> None:
    world = make_world(1)
    (alice,) = world.clients
    m_old = message(alice, run=make_run(world, NOW - 20 * DAY), at=NOW - 20 * DAY)
    old = buy(alice, NOW - 19 * DAY, world.product)
    attribution_recompute(since=NOW - 25 * DAY, until=NOW, now=NOW)
    Message.objects.filter(pk=m_old.pk).update(status=MessageStatus.UNDELIVERED)

    result = attribution_recompute(since=NOW - 5 * DAY, until=NOW + DAY, now=NOW + DAY)

    assert result.deleted == 0
    assert credited() == {old.pk: m_old.pk}


def test_transactional_messages_earn_nothing_and_plain_campaigns_take_any_purchase() -> None:
    world = make_world(2)
    alice, bob = world.clients
    message(alice, is_transactional=True)
    plain = message(bob)  # no offer: any purchase counts
    buy(alice, NOW + DAY, world.product)
    p_bob = buy(bob, NOW + DAY, ProductFactory())

    recompute()

    assert credited() == {p_bob.pk: plain.pk}


def test_the_nightly_task_recomputes_the_recent_weeks() -> None:
    from messaging.tasks.results import recompute_attribution

    now = timezone.now()
    world = make_world(1)
    (alice,) = world.clients
    m = message(alice, run=make_run(world, now - 3 * DAY), at=now - 3 * DAY)
    p = buy(alice, now - 2 * DAY, world.product)
    buy(alice, now - 40 * DAY, world.product)  # before the message anyway, and too old to look at

    result = recompute_attribution.apply().get()

    assert result["created"] == 1
    assert credited() == {p.pk: m.pk}


def test_the_nightly_schedule_is_declared() -> None:
    from messaging.schedules import SCHEDULES

    (entry,) = [s for s in SCHEDULES if s.task == "messaging.tasks.results.recompute_attribution"]
    assert entry.queue == "messaging" and entry.crontab["hour"]


# Statistics -------------------------------------------------------------------------------------


def test_two_proportion_test_matches_known_values() -> None:
    # 200/1000 against 150/1000: R's prop.test(correct=FALSE) gives X-squared = 8.658,
    # p = 0.003257; the unpooled 95% interval of the difference is 0.0168 ... 0.0832.
    result = two_proportion_test(200, 1000, 150, 1000)

    assert result.difference == pytest.approx(0.05)
    assert result.z == pytest.approx(math.sqrt(8.6580), abs=1e-3)
    assert result.p_value == pytest.approx(0.003257, abs=2e-6)
    assert result.ci_low == pytest.approx(0.016766, abs=1e-5)
    assert result.ci_high == pytest.approx(0.083234, abs=1e-5)
    assert result.verdict == Verdict.BETTER
    assert result.text == (
        "The campaign beat its control group: +5.0 pp (95% CI +1.7…+8.3), p=0.003"
    )
    # The same numbers from the standard library's normal distribution.
    se = math.sqrt(0.175 * 0.825 * (2 / 1000))
    assert result.p_value == pytest.approx(2 * (1 - statistics.NormalDist().cdf(0.05 / se)))


def test_verdicts_worse_no_difference_and_too_few() -> None:
    worse = two_proportion_test(100, 1000, 150, 1000)
    assert worse.verdict == Verdict.WORSE
    assert worse.text.startswith("The campaign did worse than its control group: −5.0 pp")

    same = two_proportion_test(52, 1000, 50, 1000)
    assert same.verdict == Verdict.NO_DIFFERENCE
    assert "no significant difference yet, need more data" in same.text
    assert same.p_value == pytest.approx(0.8380, abs=1e-3)

    assert two_proportion_test(3, 20, 0, 20).verdict == Verdict.TOO_FEW
    assert two_proportion_test(2, 5000, 1, 5000).verdict == Verdict.TOO_FEW  # 5 conversions
    assert two_proportion_test(0, 0, 0, 0).verdict == Verdict.TOO_FEW
    assert "too little data" in two_proportion_test(0, 0, 0, 0).text


def test_verdict_in_russian() -> None:
    from django.utils import translation

    with translation.override("ru"):
        text = two_proportion_test(200, 1000, 150, 1000).text
    assert "5.0" in text and "p=0.003" in text


# Reports ----------------------------------------------------------------------------------------


def crafted_run() -> tuple[World, CampaignRun, dict[str, Any]]:
    """A run of 8 treated messages (variants A and B) and 4 control records.

    Treated: A x4 (sms delivered x2, sms failed, call answered with "1" and a callback), B x4
    (email sent and clicked, email delivered, sms delivered, sms cancelled). Purchases: A's first
    client (900 + margin 200), B's clicker (1800, discount 100), one control client (900).
    A's second client opts out by SMS STOP the next day.
    """
    world = make_world(12, channels=(Channel.SMS, Channel.EMAIL, Channel.CALL))
    world.product.cost = Decimal("700")
    world.product.save()
    run = make_run(world)
    a = world.offer.variants.get()
    b = OfferVariantFactory(offer=world.offer, name="B")
    c = world.clients
    m = {
        "a1": message(c[0], run=run, variant=a),
        "a2": message(c[1], run=run, variant=a),
        "a3": message(c[2], run=run, variant=a, status=MessageStatus.FAILED),
        "a4": message(
            c[3], run=run, variant=a, status=MessageStatus.ANSWERED, channel=Channel.CALL, dtmf="1"
        ),  # fmt: skip
        "b1": message(
            c[4],
            run=run,
            variant=b,
            status=MessageStatus.SENT,
            channel=Channel.EMAIL,
            clicked_at=NOW + dt.timedelta(hours=1),
        ),  # fmt: skip
        "b2": message(c[5], run=run, variant=b, channel=Channel.EMAIL),
        "b3": message(c[6], run=run, variant=b),
        "b4": message(c[7], run=run, variant=b, status=MessageStatus.CANCELLED),
    }
    for i in range(8, 12):
        m[f"c{i}"] = message(c[i], run=run, status=MessageStatus.CONTROL)
    CallbackRequest.objects.create(
        client=c[3], message=m["a4"], offer=world.offer, source=CallbackSource.IVR
    )
    LinkClick.objects.create(message=m["b1"], clicked_at=NOW + dt.timedelta(hours=1))
    consent_record_many(
        changes=[
            ConsentChange(
                client_id=c[1].pk,
                channel=Channel.SMS,
                purpose=ConsentPurpose.MARKETING,
                action=ConsentAction.WITHDRAWN,
                source=ConsentSource.INBOUND_SMS,
                wording_version="v1",
                occurred_at=NOW + DAY,
            )
        ]
    )
    buy(c[0], NOW + DAY, world.product)
    buy(c[4], NOW + 2 * DAY, world.product, quantity="2", discount="0", price="950")
    Purchase.objects.filter(client=c[4]).update(total=Decimal("1800"))
    from crm.models import PurchaseItem

    PurchaseItem.objects.filter(client=c[4]).update(discount=Decimal("100"))
    buy(c[8], NOW + 3 * DAY, world.product)
    recompute()
    return world, run, m


def test_campaign_report_figures_on_a_crafted_run() -> None:
    world, run, _m = crafted_run()

    report = campaign_report(run)

    t, ctl = report.total.treated, report.total.control
    assert (t.messages, t.recipients, t.sent, t.delivered, t.failed) == (8, 8, 6, 5, 1)
    assert (t.answered, t.pressed_one, t.opt_outs, t.clicks) == (1, 1, 1, 1)
    assert (t.conversions, t.purchases) == (2, 2)
    assert (t.revenue, t.margin, t.discount) == (
        Decimal("2700.00"),  # 900 + (2 x 950 - 100)
        Decimal("600.00"),  # 200 + (1800 - 1400)
        Decimal("100.00"),
    )
    assert t.conversion_rate == pytest.approx(0.25)
    assert t.revenue_per_message == Decimal("450.00")  # 2700 over 6 sent
    assert (ctl.messages, ctl.conversions, ctl.revenue) == (4, 1, Decimal("900.00"))
    assert report.total.uplift.verdict == Verdict.TOO_FEW
    assert report.window_days == 7
    assert [(label, n) for label, n in report.funnel] == [
        ("planned", 8),
        ("sent", 6),
        ("delivered", 5),  # an answered call is a delivered one
        ("clicked", 1),
        ("converted", 2),
    ]
    # Sends on the day of the run, conversions the next two days.
    assert [(s, c) for _d, s, c in report.timeline] == [(6, 0), (0, 1), (0, 1)]

    variants = report.variants
    assert [v.label for v in variants] == ["variant A", "variant B"]
    assert [(v.treated.messages, v.treated.conversions) for v in variants] == [(4, 1), (4, 1)]
    assert variants[1].against_first is not None
    assert variants[1].against_first.verdict == Verdict.TOO_FEW
    assert variant_report(run)[0].treated.pressed_one == 1

    # The campaign as a whole and the offer see the same messages here.
    assert campaign_report(world.campaign).total.treated == t
    assert offer_report(world.offer).total.treated == t


def test_campaign_report_with_enough_data_says_it_beat_the_control_group() -> None:
    world = make_world(1)
    run = make_run(world)
    # 400 treated (80 converted) and 400 control (40 converted), on a handful of clients: the
    # report counts messages, so a few clients suffice.
    clients = [ClientFactory() for _ in range(4)]
    rows = []
    for i in range(800):
        control = i >= 400
        rows.append(
            Message(
                client=clients[i % 4],
                channel=Channel.SMS,
                run=run,
                offer=world.offer,
                recipient="",
                text="",
                scheduled_for=NOW,
                status=MessageStatus.CONTROL if control else MessageStatus.DELIVERED,
                sent_at=None if control else NOW,
                idempotency_key=f"bulk:{i}",
            )
        )
    Message.objects.bulk_create(rows)
    ids = list(Message.objects.filter(run=run).order_by("pk").values_list("pk", "client_id"))
    purchases = [
        Purchase(client_id=client_id, purchased_at=NOW + DAY, total=Decimal("100"))
        for pk, client_id in ids[:80] + ids[400:440]
    ]
    Purchase.objects.bulk_create(purchases)
    Attribution.objects.bulk_create(
        Attribution(
            message_id=pk,
            purchase=p,
            client_id=cid,
            run=run,
            offer=world.offer,
            is_control=pk > ids[399][0],
            purchased_at=NOW + DAY,
            revenue=Decimal("100"),
            attributed_at=NOW,
        )
        for (pk, cid), p in zip(ids[:80] + ids[400:440], purchases, strict=True)
    )

    uplift = campaign_report(run).total.uplift

    assert (uplift.conv_a, uplift.n_a, uplift.conv_b, uplift.n_b) == (80, 400, 40, 400)
    assert uplift.verdict == Verdict.BETTER
    assert uplift.text.startswith("The campaign beat its control group: +10.0 pp (95% CI +5.")


def test_report_queries_do_not_grow_with_messages(django_assert_max_num_queries: Any) -> None:
    def count_for(n: int) -> int:
        world = make_world(1)
        run = make_run(world)
        (client,) = world.clients
        variant = world.offer.variants.get()
        Message.objects.bulk_create(
            Message(client=client, channel=Channel.SMS, run=run, offer=world.offer,
                    variant=variant, recipient="x", text="x", scheduled_for=NOW,
                    status=MessageStatus.DELIVERED, sent_at=NOW,
                    idempotency_key=f"q{n}:{i}")
            for i in range(n)
        )  # fmt: skip
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as captured:
            report = campaign_report(run)
        assert report.total.treated.messages == n
        return len(captured.captured_queries)

    small, large = count_for(5), count_for(500)
    assert small == large
    with django_assert_max_num_queries(12):
        campaign_report(CampaignRun.objects.latest("pk"))


def test_dashboard_groups_campaigns_and_offers() -> None:
    world, run, _m = crafted_run()

    overview = dashboard(now=NOW + 10 * DAY)

    assert [g.label for g in overview.campaigns] == [world.campaign.name]
    assert overview.campaigns[0].treated.conversions == 2
    assert overview.campaigns[0].control.conversions == 1
    assert [g.key for g in overview.offers] == [world.offer.pk]
    assert overview.triggers == []
    assert sum(s for _d, s, _c in overview.timeline) == 6


# Charts -----------------------------------------------------------------------------------------


def test_charts_are_self_contained_svg_with_escaped_labels() -> None:
    svg = line_chart(
        ["2026-03-04", "2026-03-05"],
        [("<sent>", [10, 0]), ("conversions", [0, 3])],
        title="Sends & conversions",
    )
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert "&lt;sent&gt;" in svg and "<sent>" not in svg
    assert "http" not in svg.replace("http://www.w3.org/2000/svg", "")
    bars = bar_chart([("planned", 8), ("sent", 6)], title="Funnel")
    assert bars.count("<rect") >= 2
    assert line_chart([], [], title="empty").startswith("<svg")


# Pages, exports and access ----------------------------------------------------------------------


def staff(role: str | None = None, *, superuser: bool = False) -> HttpClient:
    user = User.objects.create_user(
        f"{role or 'root'}-{next(_keys)}", password="x", is_staff=True, is_superuser=superuser
    )
    if role:
        user.groups.add(AuthGroup.objects.get(name=role))
    http = HttpClient()
    http.force_login(user)
    return http


def test_marketer_sees_the_campaign_page_with_charts_and_verdict() -> None:
    world, run, _m = crafted_run()
    http = staff(MARKETER)

    page = http.get(reverse("reports:campaign", args=[world.campaign.pk]), {"run": run.pk})

    assert page.status_code == 200
    body = page.content.decode()
    assert body.count("<svg") >= 3  # over time, funnel, variants
    assert "too little data" in body
    assert "variant B" in body
    assert http.get(reverse("reports:dashboard")).status_code == 200
    assert http.get(reverse("reports:offer", args=[world.offer.pk])).status_code == 200


def test_operator_is_refused_and_anonymous_goes_to_login() -> None:
    world, _run, _m = crafted_run()
    url = reverse("reports:campaign", args=[world.campaign.pk])

    assert staff(OPERATOR).get(url).status_code == 403
    assert staff(OPERATOR).get(reverse("reports:dashboard")).status_code == 403
    anonymous = HttpClient().get(url)
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    assert staff(superuser=True).get(url).status_code == 200


def test_csv_and_xlsx_exports_hold_the_report_figures() -> None:
    world, run, _m = crafted_run()
    http = staff(MARKETER)
    url = reverse("reports:campaign", args=[world.campaign.pk])

    csv_query: dict[str, str | int] = {"run": run.pk, "format": "csv"}
    response = http.get(url, csv_query)
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    header = rows[0]
    treated = next(r for r in rows if r[1] == "treated")
    assert treated[header.index("messages")] == "8"
    assert treated[header.index("conversions")] == "2"
    assert treated[header.index("revenue")] == "2700.00"

    xlsx_query: dict[str, str | int] = {"run": run.pk, "format": "xlsx"}
    response = http.get(url, xlsx_query)
    assert response["Content-Type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    book = load_workbook(io.BytesIO(response.content))
    summary = list(book.worksheets[0].iter_rows(values_only=True))
    assert summary[1][header.index("messages")] == 8
    assert summary[1][header.index("revenue")] == pytest.approx(2700)
    assert len(book.worksheets) == 2

    dashboard_query: dict[str, str | int] = {"format": "csv", "days": 730}
    dashboard_csv = http.get(reverse("reports:dashboard"), dashboard_query)
    assert dashboard_csv.status_code == 200
    assert world.campaign.name in dashboard_csv.content.decode("utf-8-sig")
    assert report_tables(campaign_report(run))


def test_recompute_button_queues_the_task_after_commit(
    django_capture_on_commit_callbacks: Any,
) -> None:
    world, run, _m = crafted_run()
    http = staff(MARKETER)
    Attribution.objects.all().delete()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = http.post(
            reverse("reports:recompute", args=[world.campaign.pk]), {"run": run.pk}
        )

    assert response.status_code == 302
    assert len(callbacks) == 1
    assert (
        staff(OPERATOR).post(reverse("reports:recompute", args=[world.campaign.pk])).status_code
        == 403
    )


def test_admin_index_links_the_dashboard_for_marketers_only() -> None:
    link = reverse("reports:dashboard")

    assert link in staff(MARKETER).get(reverse("admin:index")).content.decode()
    assert link not in staff(OPERATOR).get(reverse("admin:index")).content.decode()


# Benchmark --------------------------------------------------------------------------------------


def test_the_reports_benchmark_runs_on_a_small_world(monkeypatch: pytest.MonkeyPatch) -> None:
    from crm.benchmarking import BenchmarkContext, benchmarks
    from messaging import report_benchmark

    monkeypatch.setattr(report_benchmark, "MESSAGES", 60)
    world = make_world(6)
    ProductFactory()  # a product outside the offer's category
    assert "reports" in benchmarks()
    ctx = BenchmarkContext(name="reports", clients=Client.objects.count(), repeat=1)

    report_benchmark.campaign_report_benchmark(ctx)
    report_benchmark.campaign_report_benchmark(ctx)  # re-runnable: replaces its run

    figures = {(r.case, r.metric): r for r in ctx.results}
    assert figures[("attribution", "attributed")].value > 0
    assert figures[("campaign_report", "p50")].target == 2000
    run = CampaignRun.objects.get(campaign__name=report_benchmark.NAME)
    assert run.messages.count() == 66  # 60 messages and 6 control records
    assert world.campaign.runs.count() == 0
