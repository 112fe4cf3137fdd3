"""Campaign runs: audience -> proposals -> policy -> outbox, with reasons for the rest."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import IntegrityError, transaction

from crm.models import Channel
from messaging.models import (
    Campaign,
    CampaignRun,
    ContactPolicy,
    Message,
    MessageStatus,
    RunStatus,
)
from messaging.services.campaigns import (
    CampaignError,
    campaign_run_plan,
    campaign_run_start,
    campaign_validate,
)
from tests.factories import ClientFactory, PromoPoolFactory
from tests.messaging.conftest import MSK, NOW, World, grant, make_world, withdraw

pytestmark = pytest.mark.django_db
VLAD = ZoneInfo("Asia/Vladivostok")


def run_campaign(campaign: Campaign, now: dt.datetime = NOW, **kwargs: object) -> CampaignRun:
    run = campaign_run_start(campaign=campaign, now=now)
    return campaign_run_plan(run=run, now=now, **kwargs)  # type: ignore[arg-type]


def test_a_run_plans_one_message_per_client_with_text_reason_and_time(world: World) -> None:
    run = run_campaign(world.campaign)

    assert run.status == RunStatus.PLANNED
    assert (run.audience, run.processed, run.planned, run.excluded) == (5, 5, 5, {})
    messages = list(Message.objects.order_by("client_id"))
    assert [m.client_id for m in messages] == [c.pk for c in world.clients]
    first = messages[0]
    assert first.channel == Channel.SMS
    assert first.recipient == world.clients[0].phone.as_e164  # E.164, as gateways take it
    assert first.recipient.startswith("+7") and " " not in first.recipient
    assert world.clients[0].first_name in first.text and "Purina" in first.text
    assert first.offer_id == world.offer.pk and first.variant_id is not None
    assert first.idempotency_key == f"run:{run.pk}:{first.client_id}:sms"
    assert first.status == MessageStatus.PLANNED
    assert first.expires_at == world.offer.ends_at
    assert first.products[0]["name"] == "Корм Purina One, 1,5 кг"


def test_clients_left_out_are_counted_by_reason(world: World) -> None:
    no_consent = ClientFactory()
    no_phone = ClientFactory(phone="", email="")
    grant([no_phone], Channel.SMS, Channel.EMAIL)
    from segments.services import segment_add_clients

    segment_add_clients(segment=world.segment, clients=[no_consent.pk, no_phone.pk])
    withdraw(world.clients[0], Channel.SMS)
    withdraw(world.clients[0], Channel.EMAIL)

    run = run_campaign(world.campaign)

    assert run.audience == 7
    assert run.planned == 4
    assert run.excluded == {"no_consent": 2, "no_address": 1}


def test_fallback_channel_and_the_clients_preferred_channel(world: World) -> None:
    sms_refused, prefers_email = world.clients[0], world.clients[1]
    withdraw(sms_refused, Channel.SMS)
    prefers_email.preferred_channel = Channel.EMAIL
    prefers_email.save()

    run_campaign(world.campaign)

    channel = dict(Message.objects.values_list("client_id", "channel"))
    assert channel[sms_refused.pk] == Channel.EMAIL
    assert channel[prefers_email.pk] == Channel.EMAIL
    assert channel[world.clients[2].pk] == Channel.SMS
    email = Message.objects.get(client=prefers_email)
    assert email.subject.startswith(prefers_email.first_name)


def test_quiet_hours_defer_to_the_next_local_opening() -> None:
    w = make_world(2)
    far_east = w.clients[0]
    far_east.time_zone = "Asia/Vladivostok"
    far_east.save()
    late = dt.datetime(2026, 3, 4, 15, 30, tzinfo=MSK)  # 22:30 in Vladivostok

    run_campaign(w.campaign, now=late)

    deferred = Message.objects.get(client=far_east)
    assert deferred.scheduled_for == dt.datetime(2026, 3, 5, 9, 0, tzinfo=VLAD)
    assert Message.objects.get(client=w.clients[1]).scheduled_for == late


def test_a_message_whose_offer_expires_before_the_window_is_dropped() -> None:
    w = make_world(1)
    w.offer.ends_at = dt.datetime(2026, 3, 4, 22, 0, tzinfo=MSK)
    w.offer.save()
    w.campaign.channels = ["sms"]  # e-mail's window (until 22:00) would still take it
    w.campaign.save()
    late = dt.datetime(2026, 3, 4, 21, 30, tzinfo=MSK)

    run = run_campaign(w.campaign, now=late)

    assert run.planned == 0
    assert run.excluded == {"expired_before_window": 1}


def test_caps_and_gap_leave_clients_out(world: World) -> None:
    ContactPolicy.objects.create(name="strict", is_active=True, min_gap_hours=48)
    run_campaign(world.campaign)
    other = Campaign.objects.create(
        name="Вторая", offer=None, segment=world.segment, channels=["sms"], sms_text="Привет!"
    )

    run = run_campaign(other, now=NOW + dt.timedelta(hours=30))

    assert run.planned == 0
    assert run.excluded == {"min_gap": 5}


def test_the_same_offer_reaches_a_client_once_per_window(world: World) -> None:
    first = run_campaign(world.campaign)
    again = run_campaign(world.campaign, now=NOW + dt.timedelta(days=3))

    assert first.planned == 5
    assert again.planned == 0
    assert again.excluded == {"offer_cap": 5}


def test_an_offer_rule_with_a_long_window_still_counts_old_messages(world: World) -> None:
    from messaging.models import OfferContactRule

    OfferContactRule.objects.create(offer=world.offer, max_per_client=1, window_days=90)
    world.offer.ends_at = NOW + dt.timedelta(days=120)
    world.offer.save()
    run_campaign(world.campaign)

    again = run_campaign(world.campaign, now=NOW + dt.timedelta(days=60))

    assert again.planned == 0
    assert again.excluded == {"offer_cap": 5}


def test_holdout_clients_get_a_control_record_and_nothing_to_send(world: World) -> None:
    world.offer.holdout_percent = Decimal("100")
    world.offer.save()

    run = run_campaign(world.campaign)

    assert (run.planned, run.control) == (0, 5)
    assert set(Message.objects.values_list("status", flat=True)) == {MessageStatus.CONTROL}


def test_promo_codes_go_only_to_clients_who_get_a_message(world: World) -> None:
    from offers.services import promo_pool_generate

    pool = PromoPoolFactory()
    promo_pool_generate(pool=pool, count=10)
    world.offer.promo_pool = pool
    world.offer.save()
    withdraw(world.clients[0], Channel.SMS)
    withdraw(world.clients[0], Channel.EMAIL)

    run_campaign(world.campaign)

    messages = list(Message.objects.all())
    assert len(messages) == 4
    for m in messages:
        assert m.promo_code.startswith("LX-") and m.promo_code in m.text
    assert pool.codes.filter(client__isnull=False).count() == 4


def test_tracked_link_is_personal(world: World) -> None:
    world.campaign.landing_url = "https://shop.example/cats"
    world.campaign.save()

    run_campaign(world.campaign)

    tokens = set()
    for m in Message.objects.all():
        assert m.link_token and m.text.endswith(f"https://lichno.example/o/{m.link_token}")
        tokens.add(m.link_token)
    assert len(tokens) == 5


def test_replanning_a_run_creates_nothing_new(world: World) -> None:
    run = run_campaign(world.campaign)
    CampaignRun.objects.filter(pk=run.pk).update(
        status=RunStatus.PLANNING, processed=0, last_client_id=0, planned=0, excluded={}
    )

    again = campaign_run_plan(run=run.pk, now=NOW)

    assert Message.objects.count() == 5
    assert again.planned == 0 and again.excluded == {"already_planned": 5}


def test_one_run_plans_at_a_time(world: World) -> None:
    campaign_run_start(campaign=world.campaign, now=NOW)
    with pytest.raises(CampaignError):
        campaign_run_start(campaign=world.campaign, now=NOW)


def test_an_inactive_offer_cannot_start(world: World) -> None:
    world.offer.status = "paused"
    world.offer.save()
    with pytest.raises(CampaignError):
        campaign_run_start(campaign=world.campaign, now=NOW)


def test_an_offer_campaign_cannot_be_transactional(world: World) -> None:
    # Transactional messages skip consent, caps and quiet hours: an offer never may (invariant 1)
    world.campaign.is_transactional = True
    with pytest.raises(CampaignError, match="cannot be transactional"):
        campaign_validate(world.campaign, at=NOW)
    with pytest.raises(IntegrityError), transaction.atomic():
        Campaign.objects.filter(pk=world.campaign.pk).update(is_transactional=True)
    assert not Campaign.objects.filter(is_transactional=True).exists()


def test_queries_per_batch_do_not_grow_with_the_batch() -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries(n: int) -> tuple[int, int]:
        w = make_world(n)
        run = campaign_run_start(campaign=w.campaign, now=NOW)
        with CaptureQueriesContext(connection) as ctx:
            campaign_run_plan(run=run, now=NOW, batch_size=10_000)
        Message.objects.all().delete()
        sql = [q["sql"] for q in ctx.captured_queries]
        inserts = sum(1 for s in sql if 'INTO "messaging_message"' in s)
        return len(sql) - inserts, inserts

    (small, small_inserts), (large, large_inserts) = queries(5), queries(120)
    assert large == small <= 40
    if connection.vendor == "postgresql":
        # One COPY per batch, through the driver's copy protocol (not in Django's query log).
        assert small_inserts == large_inserts == 0
    else:
        # SQLite caps the parameters of a statement (~30 rows of messages).
        assert small_inserts == 1
        assert large_inserts <= 4
