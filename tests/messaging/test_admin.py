"""The messaging admin: changelists with bounded queries for each role, "send now" with its
confirmation, the run page with its reasons, one active policy, campaign forms, the client's
message history."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client as HttpClient
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from crm.models import Channel
from crm.roles import MARKETER, OPERATOR
from messaging.models import (
    Campaign,
    CampaignRun,
    CampaignStatus,
    ChannelRule,
    ContactPolicy,
    FiringStatus,
    Message,
    RunStatus,
    TriggerFiring,
    TriggerKind,
    TriggerScenario,
)
from messaging.services.campaigns import campaign_run_plan, campaign_run_start
from segments.services import segment_add_clients
from tests.factories import ClientFactory
from tests.messaging.conftest import World, make_world

pytestmark = pytest.mark.django_db

CHANGELISTS = [
    "messaging_contactpolicy",
    "messaging_offercontactrule",
    "messaging_campaign",
    "messaging_campaignrun",
    "messaging_message",
    "messaging_triggerscenario",
    "messaging_triggerfiring",
    "messaging_gatewayevent",
    "messaging_inboundsms",
    "messaging_call",
    "messaging_callbackrequest",
    "messaging_numberblock",
]


def browser(role: str | None) -> HttpClient:
    if role is None:
        user = User.objects.create_superuser(username="root", password="x")
    else:
        user = User.objects.create_user(username=role.lower(), password="x", is_staff=True)
        user.groups.add(Group.objects.get(name=role))
    http = HttpClient(HTTP_ACCEPT_LANGUAGE="en")
    http.force_login(user)
    return http


def live_world(n: int = 5) -> World:
    """The messaging world with its offer live now (the admin works on the real clock)."""
    w = make_world(n)
    now = timezone.now()
    w.offer.starts_at = now - dt.timedelta(days=1)
    w.offer.ends_at = now + dt.timedelta(days=14)
    w.offer.save(update_fields=["starts_at", "ends_at"])
    return w


def planned_run(w: World) -> CampaignRun:
    run = campaign_run_start(campaign=w.campaign)
    return campaign_run_plan(run=run)


def scenario_with_firings(w: World) -> TriggerScenario:
    scenario = TriggerScenario.objects.create(
        name="Брошенная корзина",
        kind=TriggerKind.ABANDONED_CART,
        channels=["sms"],
        sms_text="{{ client.first_name }}, корзина ждёт",
        is_active=True,
    )
    now = timezone.now()
    for i, client in enumerate(w.clients):
        TriggerFiring.objects.create(
            scenario=scenario,
            client=client,
            occasion=f"cart:{i}",
            fired_at=now - dt.timedelta(hours=i),
            status=FiringStatus.SUPPRESSED if i % 2 else FiringStatus.PLANNED,
            reason="channel_cap" if i % 2 else "",
        )
    return scenario


@pytest.mark.parametrize("role", [None, MARKETER])
def test_changelists_and_change_pages_load_with_bounded_queries(
    role: str | None, django_assert_max_num_queries: Any
) -> None:
    w = live_world(8)
    run = planned_run(w)
    scenario_with_firings(w)
    http = browser(role)

    for name in CHANGELISTS:
        with django_assert_max_num_queries(10):
            response = http.get(reverse(f"admin:{name}_changelist"))
        assert response.status_code == 200, name
    message = Message.objects.filter(run=run).first()
    pages = [
        reverse("admin:messaging_campaignrun_change", args=[run.pk]),
        reverse("admin:messaging_message_change", args=[message.pk]),  # type: ignore[union-attr]
        reverse("admin:messaging_campaign_change", args=[w.campaign.pk]),
        reverse("admin:messaging_triggerscenario_changelist"),
    ]
    for url in pages:
        with django_assert_max_num_queries(14):
            assert http.get(url).status_code == 200, url
    # The confirmation renders a sample of the offer (the engine's batch queries), no more.
    with django_assert_max_num_queries(30):
        assert (
            http.get(reverse("admin:messaging_campaign_send", args=[w.campaign.pk])).status_code
            == 200
        )


def test_queries_do_not_grow_with_rows(django_assert_max_num_queries: Any) -> None:
    w = live_world(30)
    planned_run(w)
    scenario_with_firings(w)
    http = browser(None)
    # Thirty clients, their messages and firings: the same queries as for eight.
    for name in ("messaging_message", "messaging_campaignrun", "messaging_triggerfiring"):
        url = reverse(f"admin:{name}_changelist")
        with django_assert_max_num_queries(10):
            assert http.get(url).status_code == 200
    with django_assert_max_num_queries(30):
        assert (
            http.get(reverse("admin:messaging_campaign_send", args=[w.campaign.pk])).status_code
            == 200
        )


def test_operator_reads_messages_but_not_campaigns() -> None:
    w = live_world(2)
    planned_run(w)
    http = browser(OPERATOR)

    assert http.get(reverse("admin:messaging_message_changelist")).status_code == 200
    assert http.get(reverse("admin:messaging_campaign_changelist")).status_code == 403
    send = reverse("admin:messaging_campaign_send", args=[w.campaign.pk])
    assert http.post(send).status_code == 403
    assert CampaignRun.objects.count() == 1


def test_send_now_confirms_recipients_and_cost_then_starts_a_run(
    settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.OFFERS_SMS_PART_PRICE = "2.50"
    w = live_world(5)
    # Consent for SMS only: fallback order sms -> email gives SMS to all five.
    no_consent = ClientFactory()
    segment_add_clients(segment=w.segment, clients=[no_consent.pk])
    http = browser(MARKETER)
    url = reverse("admin:messaging_campaign_send", args=[w.campaign.pk])

    page = http.get(url)

    assert page.status_code == 200
    estimate = page.context["estimate"]
    assert (estimate.audience, estimate.reachable, estimate.holdout) == (6, 5, 0)
    assert [(c.channel, c.consented, c.first_choice) for c in estimate.channels] == [
        ("sms", 5, 5),
        ("email", 5, 0),
    ]
    assert estimate.sms_parts >= 1
    assert estimate.sms_cost == Decimal("2.50") * estimate.sms_parts * 5
    body = page.content.decode()
    assert f"{estimate.sms_cost} ₽" in body
    assert CampaignRun.objects.count() == 0  # GET starts nothing

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = http.post(url)

    run = CampaignRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:messaging_campaignrun_change", args=[run.pk])
    assert run.status == RunStatus.PLANNING
    assert run.started_by is not None and run.started_by.username == "marketer"
    assert len(callbacks) == 1  # the planning task, enqueued after commit
    w.campaign.refresh_from_db()
    assert w.campaign.status == CampaignStatus.RUNNING

    # The worker plans it; the run page then says who got what and why the rest did not.
    campaign_run_plan(run=run)
    page = http.get(response["Location"])
    body = page.content.decode()
    assert page.status_code == 200
    assert "no marketing consent for the campaign&#x27;s channels" in body
    assert "planned" in body and "?run__id__exact=" in body
    assert page.context["adminform"].form.instance.planned == 5


def test_send_now_explains_why_a_campaign_cannot_start() -> None:
    w = live_world(2)
    w.offer.status = "draft"
    w.offer.save(update_fields=["status"])
    http = browser(MARKETER)
    url = reverse("admin:messaging_campaign_send", args=[w.campaign.pk])

    page = http.get(url)
    assert "The offer is not active now." in page.content.decode()
    assert page.context["estimate"] is None

    response = http.post(url, follow=True)
    assert CampaignRun.objects.count() == 0
    assert "The offer is not active now." in response.content.decode()


def test_run_page_lists_excluded_reasons_and_message_statuses() -> None:
    w = live_world(3)
    run = planned_run(w)
    CampaignRun.objects.filter(pk=run.pk).update(
        excluded={"no_consent": 4, "channel_cap": 2, "no_window": 1}
    )
    Message.objects.filter(run=run).update(status="delivered")
    http = browser(None)

    body = http.get(reverse("admin:messaging_campaignrun_change", args=[run.pk])).content.decode()

    reasons = ["no marketing consent", "channel frequency cap reached", "quiet hours: no allowed"]
    positions = [body.index(r) for r in reasons]
    assert positions == sorted(positions)  # most frequent first
    assert "<td>3</td>" in body or "<strong>3</strong>" in body  # three delivered


def policy_form(name: str, active: bool, rules: int = 0) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": name,
        "total_limit": "3",
        "total_window_days": "7",
        "min_gap_hours": "24",
        "morning_start": "09:00",
        "afternoon_start": "12:00",
        "evening_start": "18:00",
        "learn_preferred_time": "on",
        "channel_rules-TOTAL_FORMS": str(rules),
        "channel_rules-INITIAL_FORMS": "0",
        "channel_rules-MIN_NUM_FORMS": "0",
        "channel_rules-MAX_NUM_FORMS": "1000",
    }
    if active:
        data["make_active"] = "on"
    if rules:
        data.update(
            {
                "channel_rules-0-channel": "sms",
                "channel_rules-0-limit": "2",
                "channel_rules-0-window_days": "7",
                "channel_rules-0-weekday_start": "09:00",
                "channel_rules-0-weekday_end": "21:00",
                "channel_rules-0-weekend_start": "10:00",
                "channel_rules-0-weekend_end": "20:00",
            }
        )
    return data


def test_activating_a_policy_deactivates_the_other() -> None:
    old = ContactPolicy.objects.create(name="Старая", is_active=True)
    http = browser(MARKETER)

    response = http.post(
        reverse("admin:messaging_contactpolicy_add"), policy_form("Новая", True, rules=1)
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    new = ContactPolicy.objects.get(name="Новая")
    assert list(ContactPolicy.objects.filter(is_active=True)) == [new]
    assert ChannelRule.objects.get(policy=new).limit == 2
    old.refresh_from_db()
    assert not old.is_active

    # And back, with the admin action.
    http.post(
        reverse("admin:messaging_contactpolicy_changelist"),
        {"action": "make_active", "_selected_action": [old.pk]},
    )
    assert list(ContactPolicy.objects.filter(is_active=True).values_list("name", flat=True)) == [
        "Старая"
    ]


def campaign_form(w: World, **overrides: Any) -> dict[str, Any]:
    data = {
        "name": "Новости для кошатников",
        "offer": "",
        "segment": str(w.segment.pk),
        "channels_0": "email",
        "channels_1": "sms",
        "channels_2": "",
        "prefer_client_channel": "on",
        "sms_text": "{{ client.first_name }}, новинки для кошек: [link]",
        "voice_script": "",
        "email_subject": "Новинки",
        "email_body": "<p>{{ client.first_name }}, новинки для кошек: [link]</p>",
        "landing_url": "https://lichno.example/cats",
        "schedule_kind": "now",
        "run_at_0": "",
        "run_at_1": "",
        "crontab": "",
        "time_target": "",
        "throttle_per_second": "20",
    }
    data.update(overrides)
    return data


def test_campaign_form_checks_templates_and_keeps_the_channel_order() -> None:
    w = live_world(2)
    http = browser(MARKETER)
    add = reverse("admin:messaging_campaign_add")

    bad = http.post(add, campaign_form(w, sms_text="{{ client.password }} {% load x %}"))
    assert bad.status_code == 200
    errors = bad.context["adminform"].form.errors
    assert "sms_text" in errors
    twice = http.post(add, campaign_form(w, channels_1="email"))
    assert "channels" in twice.context["adminform"].form.errors
    empty = http.post(add, campaign_form(w, email_body=""))
    assert "Write the message for: email." in str(empty.context["adminform"].form.errors)

    ok = http.post(add, campaign_form(w))
    assert ok.status_code == 302
    campaign = Campaign.objects.get(name="Новости для кошатников")
    assert campaign.channels == ["email", "sms"]
    assert campaign.created_by is not None and campaign.created_by.username == "marketer"
    assert campaign.status == CampaignStatus.DRAFT


def test_recurring_campaign_schedule_and_pause_keep_the_beat_entry_in_step() -> None:
    w = live_world(2)
    weekly = CrontabSchedule.objects.create(minute="0", hour="11", day_of_week="2")
    daily = CrontabSchedule.objects.create(minute="30", hour="10")
    http = browser(MARKETER)
    add = reverse("admin:messaging_campaign_add")

    missing = http.post(add, campaign_form(w, schedule_kind="recurring"))
    assert "crontab" in missing.context["adminform"].form.errors
    http.post(add, campaign_form(w, schedule_kind="recurring", crontab=str(weekly.pk)))
    campaign = Campaign.objects.get(name="Новости для кошатников")
    assert campaign.periodic_task is None  # a draft arms nothing

    http.post(reverse("admin:messaging_campaign_schedule", args=[campaign.pk]))
    campaign.refresh_from_db()
    task = PeriodicTask.objects.get(pk=campaign.periodic_task_id)
    assert (campaign.status, task.enabled, task.crontab_id) == ("scheduled", True, weekly.pk)

    # Editing the crontab of a scheduled campaign moves its beat entry with it.
    change = reverse("admin:messaging_campaign_change", args=[campaign.pk])
    http.post(change, campaign_form(w, schedule_kind="recurring", crontab=str(daily.pk)))
    task.refresh_from_db()
    assert (task.enabled, task.crontab_id) == (True, daily.pk)

    http.post(reverse("admin:messaging_campaign_pause", args=[campaign.pk]))
    campaign.refresh_from_db()
    task.refresh_from_db()
    assert (campaign.status, task.enabled) == ("paused", False)
    assert CampaignRun.objects.count() == 0


def test_client_page_shows_the_latest_messages(django_assert_max_num_queries: Any) -> None:
    w = live_world(2)
    run = planned_run(w)
    client = w.clients[0]
    message = Message.objects.get(run=run, client=client)
    http = browser(OPERATOR)
    url = reverse("admin:crm_client_change", args=[client.pk])

    with django_assert_max_num_queries(30):
        page = http.get(url)

    body = page.content.decode()
    assert page.status_code == 200
    assert "Messages (latest 50)" in body
    assert reverse("admin:messaging_message_change", args=[message.pk]) in body
    assert w.campaign.name in body
    assert f"?client__id__exact={client.pk}" in body  # "all messages of this client"
    assert (
        http.get(
            f"{reverse('admin:messaging_message_changelist')}?client__id__exact={client.pk}"
        ).status_code
        == 200
    )


def test_saving_a_client_neither_reads_nor_validates_the_history_rows(
    rf: Any, django_assert_num_queries: Any
) -> None:
    from django.contrib import admin

    from messaging.admin import MessageHistoryInline

    w = live_world(1)
    planned_run(w)
    client = w.clients[0]
    request = rf.post("/")
    request.user = User.objects.create_superuser(username="root", password="x")
    inline = MessageHistoryInline(type(client), admin.site)
    formset_class = inline.get_formset(request, client)
    # What the history template posts: a management form that says "no forms".
    data = {f"messages-{k}": "0" for k in ("TOTAL_FORMS", "INITIAL_FORMS", "MIN_NUM_FORMS")}
    data["messages-MAX_NUM_FORMS"] = "0"

    formset = formset_class(data, instance=client, prefix="messages")
    with django_assert_num_queries(0):
        assert formset.is_valid()
        assert formset.save() == []

    assert Message.objects.filter(client=client).count() == 1


def test_scenario_changelist_counts_recent_firings() -> None:
    w = live_world(5)
    scenario = scenario_with_firings(w)
    http = browser(MARKETER)

    page = http.get(reverse("admin:messaging_triggerscenario_changelist"))

    row = page.context["cl"].result_list[0]
    assert row.pk == scenario.pk
    assert (row.fired_recent, row.planned_recent, row.suppressed_recent) == (5, 3, 2)


def test_scenario_form_requires_a_text_per_channel() -> None:
    http = browser(MARKETER)
    data = {
        "name": "День рождения",
        "kind": "birthday",
        "priority": "70",
        "offer": "",
        "channels_0": "sms",
        "channels_1": "email",
        "channels_2": "",
        "delay_hours": "0",
        "days": "3",
        "followup_days": "0",
        "max_followups": "0",
        "sms_text": "{{ client.first_name }}, с днём рождения!",
        "voice_script": "",
        "email_subject": "",
        "email_body": "",
        "landing_url": "",
    }
    page = http.post(reverse("admin:messaging_triggerscenario_add"), data)
    assert "Write the message for: e-mail." in page.content.decode()

    data["channels_1"] = ""
    assert http.post(reverse("admin:messaging_triggerscenario_add"), data).status_code == 302
    assert TriggerScenario.objects.get().channels == [Channel.SMS]


def test_campaign_form_refuses_an_offer_campaign_flagged_transactional() -> None:
    w = live_world(2)
    http = browser(MARKETER)
    form = campaign_form(w, offer=str(w.offer.pk), is_transactional="on", channels_0="sms")
    form["channels_1"] = ""

    page = http.post(reverse("admin:messaging_campaign_add"), form)

    assert page.status_code == 200
    errors = page.context["adminform"].form.non_field_errors()
    assert any("cannot be transactional" in e for e in errors)
    assert not Campaign.objects.filter(name=form["name"]).exists()
