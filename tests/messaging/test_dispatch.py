"""Dispatch: due messages reach the backend once; consent, expiry and quiet hours re-checked."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any, cast

import pytest
from django.core import mail
from django.core.mail import EmailMultiAlternatives
from django.db import connection, transaction

from crm.models import Channel, Consent
from messaging.backends import locmem
from messaging.models import ChannelRule, ContactPolicy, Message, MessageStatus
from messaging.services.campaigns import campaign_run_plan, campaign_run_start
from messaging.services.dispatch import dispatch_due, promo_codes_redeemed, recover_stale_claims
from messaging.services.outbox import transactional_message_create
from offers.models import PromoCode
from offers.services import promo_code_redeem, promo_pool_generate
from tests.factories import PromoPoolFactory
from tests.messaging.conftest import MSK, NOW, World, withdraw

pytestmark = pytest.mark.django_db


def planned(world: World, now: dt.datetime = NOW) -> list[Message]:
    run = campaign_run_start(campaign=world.campaign, now=now)
    campaign_run_plan(run=run, now=now)
    return list(Message.objects.order_by("pk"))


def test_due_messages_are_sent_once(world: World) -> None:
    messages = planned(world)

    result = dispatch_due(now=NOW)
    again = dispatch_due(now=NOW)

    assert result.counts == {"sent": 5}
    assert again.counts == {}
    assert sorted(m.id for m in locmem.outbox) == [m.pk for m in messages]
    sent = Message.objects.get(pk=messages[0].pk)
    assert sent.status == MessageStatus.SENT
    assert sent.provider_id.startswith("locmem-") and sent.sent_at == NOW and sent.attempts == 1
    assert locmem.outbox[0].text == messages[0].text


def test_messages_not_yet_due_wait(world: World) -> None:
    planned(world)
    Message.objects.update(scheduled_for=NOW + dt.timedelta(hours=1))

    assert dispatch_due(now=NOW).counts == {}
    assert dispatch_due(now=NOW + dt.timedelta(hours=1)).counts == {"sent": 5}


def test_a_withdrawal_cancels_queued_messages_at_once(world: World) -> None:
    planned(world)
    withdraw(world.clients[0], Channel.SMS)

    assert Message.objects.get(client=world.clients[0]).status == MessageStatus.CANCELLED
    result = dispatch_due(now=NOW)
    assert result.counts == {"sent": 4}
    assert world.clients[0].pk not in {m.metadata.get("client") for m in locmem.outbox}
    assert world.clients[0].phone.as_e164 not in {m.to for m in locmem.outbox}


def test_consent_is_checked_again_right_before_sending(world: World) -> None:
    planned(world)
    # A consent that disappears without the withdrawal hook (say, a direct data fix).
    Consent.objects.filter(client=world.clients[1], channel=Channel.SMS).update(is_granted=False)

    result = dispatch_due(now=NOW)

    assert result.counts == {"sent": 4, "cancelled": 1}
    message = Message.objects.get(client=world.clients[1])
    assert (message.status, message.status_reason) == (
        MessageStatus.CANCELLED,
        "no consent at send time",
    )


def test_expired_offers_are_not_sent(world: World) -> None:
    planned(world)
    Message.objects.filter(client=world.clients[0]).update(expires_at=NOW)

    assert dispatch_due(now=NOW).counts == {"sent": 4, "expired": 1}


def test_a_late_dispatch_waits_for_the_next_opening(world: World) -> None:
    planned(world)
    night = dt.datetime(2026, 3, 4, 23, 30, tzinfo=MSK)

    result = dispatch_due(now=night)

    assert result.counts == {"deferred": 5}
    assert set(Message.objects.values_list("scheduled_for", flat=True)) == {
        dt.datetime(2026, 3, 5, 9, 0, tzinfo=MSK)
    }
    assert locmem.outbox == []


def test_a_message_deferred_into_another_ones_gap_waits_until_it_fits(world: World) -> None:
    # Given a 24-hour gap, and two clients each with an SMS due at 20:55 and another one
    # planned for tomorrow at 20:50; the second client's offer ends the day after at noon
    policy = ContactPolicy.objects.create(
        name="gap", is_active=True, min_gap_hours=24, total_limit=10
    )
    ChannelRule.objects.create(policy=policy, channel=Channel.SMS, limit=10)
    messages = planned(world)
    evening = dt.datetime(2026, 3, 4, 20, 55, tzinfo=MSK)
    Message.objects.update(scheduled_for=evening)
    waiting, expiring, *others = messages
    Message.objects.filter(pk=expiring.pk).update(
        expires_at=dt.datetime(2026, 3, 6, 12, 0, tzinfo=MSK)
    )
    tomorrow = [
        Message.objects.create(
            client=m.client,
            channel=Channel.SMS,
            recipient=m.recipient,
            text="Завтрашнее",
            scheduled_for=dt.datetime(2026, 3, 5, 20, 50, tzinfo=MSK),
            idempotency_key=f"tomorrow:{m.pk}",
        )
        for m in (waiting, expiring)
    ]

    # When dispatch runs late, after the quiet hours began
    result = dispatch_due(now=evening + dt.timedelta(minutes=10))

    # Then tomorrow morning would be within 12 hours of tomorrow's message: the first waits a
    # full gap after it, still inside the SMS hours; the second's offer ends before that
    assert result.counts == {"deferred": 4, "expired": 1}
    waiting.refresh_from_db()
    assert (waiting.status, waiting.scheduled_for, waiting.status_reason) == (
        MessageStatus.PLANNED,
        dt.datetime(2026, 3, 6, 20, 50, tzinfo=MSK),
        "deferred: quiet hours and caps",
    )
    expiring.refresh_from_db()
    assert (expiring.status, expiring.status_reason) == (
        MessageStatus.EXPIRED,
        "offer expires before a time within its caps",
    )
    assert {m.status for m in Message.objects.filter(pk__in=[m.pk for m in tomorrow])} == {
        MessageStatus.PLANNED
    }
    rest = Message.objects.filter(pk__in=[m.pk for m in others])
    assert {(m.status, m.scheduled_for) for m in rest} == {
        (MessageStatus.PLANNED, dt.datetime(2026, 3, 5, 9, 0, tzinfo=MSK))
    }
    assert locmem.outbox == []


def test_transient_errors_retry_with_backoff_then_fail(world: World, settings: Any) -> None:
    settings.MESSAGING_MAX_ATTEMPTS = 2
    messages = planned(world)
    flaky = messages[0].recipient
    locmem.fail_transiently.add(flaky)

    first = dispatch_due(now=NOW)
    retried = Message.objects.get(pk=messages[0].pk)
    assert first.counts == {"sent": 4, "retried": 1}
    assert retried.status == MessageStatus.PLANNED
    assert retried.scheduled_for == NOW + dt.timedelta(seconds=30)

    locmem.fail_transiently.add(flaky)
    second = dispatch_due(now=NOW + dt.timedelta(minutes=1))
    assert second.counts == {"failed": 1}
    assert Message.objects.get(pk=messages[0].pk).status_reason == "too many attempts"


def test_permanent_errors_fail_at_once(world: World) -> None:
    messages = planned(world)
    locmem.fail_permanently.add(messages[2].recipient)

    assert dispatch_due(now=NOW).counts == {"sent": 4, "failed": 1}
    failed = Message.objects.get(pk=messages[2].pk)
    assert (failed.status, failed.error) == (MessageStatus.FAILED, "invalid number")


def test_a_crash_after_the_gateway_accepted_never_sends_twice(world: World) -> None:
    messages = planned(world)
    # A worker claimed and sent two messages, then died before recording it.
    crashed = messages[:2]
    from messaging.backends import get_backend
    from messaging.services.dispatch import _outgoing

    get_backend("sms").send_messages([_outgoing(m) for m in crashed[:1]])
    Message.objects.filter(pk__in=[m.pk for m in crashed]).update(
        status=MessageStatus.QUEUED, claimed_until=NOW - dt.timedelta(seconds=1), attempts=1
    )

    recovered = recover_stale_claims()
    result = dispatch_due(now=NOW)

    assert recovered == {"recovered_sent": 1, "recovered_requeued": 1}
    assert result.counts == {"sent": 4}
    assert sorted(m.id for m in locmem.outbox) == [m.pk for m in messages]


def test_a_backend_that_cannot_tell_gets_unknown_outcomes_failed(
    world: World, settings: Any
) -> None:
    settings.SMS_BACKEND = "messaging.backends.console.ConsoleBackend"
    messages = planned(world)
    Message.objects.filter(pk=messages[0].pk).update(
        status=MessageStatus.QUEUED, claimed_until=NOW - dt.timedelta(seconds=1)
    )

    assert recover_stale_claims() == {"recovered_unknown": 1}
    assert Message.objects.get(pk=messages[0].pk).status == MessageStatus.FAILED


def test_transactional_messages_skip_consent_and_quiet_hours(world: World) -> None:
    client = world.clients[0]
    withdraw(client, Channel.SMS)
    message = transactional_message_create(
        client_id=client.pk,
        channel=Channel.SMS,
        recipient=client.phone.as_e164,
        text="Вы отписались от рассылки.",
        idempotency_key="stop-confirm:1",
        scheduled_for=NOW,
    )
    twice = transactional_message_create(
        client_id=client.pk,
        channel=Channel.SMS,
        recipient=client.phone.as_e164,
        text="Вы отписались от рассылки.",
        idempotency_key="stop-confirm:1",
    )
    night = dt.datetime(2026, 3, 4, 23, 30, tzinfo=MSK)

    assert twice.pk == message.pk
    assert dispatch_due(now=night).counts == {"sent": 1}


def test_email_carries_html_text_and_one_click_unsubscribe(world: World, client: Any) -> None:
    world.campaign.channels = ["email"]
    world.campaign.save()
    messages = planned(world)

    dispatch_due(now=NOW)

    assert len(mail.outbox) == 5
    letter = cast(EmailMultiAlternatives, mail.outbox[0])  # e-mails are sent with an HTML part
    assert letter.to == [messages[0].recipient]
    assert letter.subject == messages[0].subject
    html = cast(str, letter.alternatives[0][0])
    unsubscribe = letter.extra_headers["List-Unsubscribe"].strip("<>")
    assert letter.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert unsubscribe in html and unsubscribe in letter.body
    assert "<p>" not in letter.body

    path = unsubscribe.removeprefix("https://lichno.example")
    assert client.get(path).status_code == 200
    assert Consent.objects.get(client=world.clients[0], channel="email").is_granted
    response = client.post(path, {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    consent = Consent.objects.get(client=world.clients[0], channel="email")
    assert (consent.is_granted, consent.source) == (False, "email_unsubscribe")


def test_tracked_link_records_the_click_and_redirects(world: World, client: Any) -> None:
    world.campaign.landing_url = "https://shop.example/cats"
    world.campaign.save()
    message = planned(world)[0]

    response = client.get(f"/o/{message.link_token}", HTTP_USER_AGENT="test")
    client.get(f"/o/{message.link_token}")

    assert response.status_code == 302 and response["Location"] == "https://shop.example/cats"
    message.refresh_from_db()
    assert message.clicked_at is not None
    assert message.clicks.count() == 2
    assert client.get("/o/unknown-token").status_code == 404


def test_dispatch_queries_do_not_grow_with_the_chunk() -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.messaging.conftest import make_world

    def queries(n: int) -> int:
        w = make_world(n)
        planned(w)
        with CaptureQueriesContext(connection) as ctx:
            result = dispatch_due(now=NOW, chunk_size=1000)
        assert result.counts == {"sent": n}
        Message.objects.all().delete()
        sql = [q["sql"] for q in ctx.captured_queries]
        return sum(1 for s in sql if not s.startswith(("SAVEPOINT", "RELEASE SAVEPOINT")))

    small, large = queries(5), queries(60)
    assert small == large <= 16


# A promo code used after planning (invariant 6) ----------------------------------------------


def planned_with_codes(world: World) -> list[Message]:
    pool = PromoPoolFactory()
    promo_pool_generate(pool=pool, count=10)
    world.offer.promo_pool = pool
    world.offer.save()
    messages = planned(world)
    assert all(m.promo_code for m in messages)
    return messages


def test_redeeming_a_code_cancels_the_message_still_waiting_to_offer_it(world: World) -> None:
    first, *others = planned_with_codes(world)

    promo_code_redeem(code=first.promo_code, client_id=first.client_id)

    first.refresh_from_db()
    assert (first.status, first.status_reason) == (MessageStatus.CANCELLED, "promo code redeemed")
    assert dispatch_due(now=NOW).counts == {"sent": 4}
    assert all(first.promo_code not in m.text for m in locmem.outbox)
    assert {m.id for m in locmem.outbox} == {m.pk for m in others}


def test_a_code_used_after_the_claim_is_checked_again_right_before_sending(world: World) -> None:
    first, *_ = planned_with_codes(world)
    # Redeemed without the hook (a direct data fix, or a redemption between claim and send).
    PromoCode.objects.filter(code=first.promo_code).update(redeemed_at=NOW)

    result = dispatch_due(now=NOW)

    assert result.counts == {"sent": 4, "cancelled": 1}
    first.refresh_from_db()
    assert (first.status, first.status_reason) == (MessageStatus.CANCELLED, "promo code redeemed")
    assert all(first.promo_code not in m.text for m in locmem.outbox)


@pytest.mark.django_db(transaction=True)
def test_a_redemption_waits_for_a_send_that_read_its_code(postgres: None, world: World) -> None:
    first, *_ = planned_with_codes(world)
    reading, release = threading.Event(), threading.Event()

    def sending() -> None:  # dispatch's send transaction, past its check of the chunk's codes
        try:
            with transaction.atomic():
                assert promo_codes_redeemed([first]) == set()
                reading.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    def redeeming() -> None:
        try:
            promo_code_redeem(code=first.promo_code, client_id=first.client_id)
        finally:
            connection.close()

    sender, redeemer = threading.Thread(target=sending), threading.Thread(target=redeeming)
    sender.start()
    assert reading.wait(timeout=10)
    redeemer.start()
    redeemer.join(timeout=1.0)
    waited = redeemer.is_alive()
    release.set()
    sender.join(timeout=30)
    redeemer.join(timeout=30)

    assert waited, "the redemption did not wait for the send that had read the code"
    assert PromoCode.objects.get(code=first.promo_code).redeemed_at is not None
