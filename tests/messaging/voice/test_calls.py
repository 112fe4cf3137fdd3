"""Call events -> outcomes and follow-ups: DTMF meanings, replays, retries in the call window,
per-number caps, blocked numbers; the SIP backend's queueing and prompts."""

from __future__ import annotations

import datetime as dt
import wave
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from crm.models import Channel, ConsentEvent
from messaging.backends import OutgoingMessage, SendStatus, locmem
from messaging.backends.sip import SipBackend, render_prompt
from messaging.backends.voice import NotSupported
from messaging.events import CallEvent
from messaging.models import (
    Call,
    CallbackRequest,
    CallDirection,
    CallState,
    ChannelRule,
    ContactPolicy,
    GatewayEvent,
    Message,
    MessageStatus,
    NumberBlock,
    NumberBlockReason,
)
from messaging.selectors_calls import numbers_blocked, numbers_over_cap
from messaging.services.calls import (
    call_events_apply,
    call_events_process,
    call_retries_schedule,
    calls_close_stale,
    retry_key,
)
from messaging.services.dispatch import dispatch_due
from tests.factories import ClientFactory
from tests.messaging.voice.conftest import grant_calls

pytestmark = pytest.mark.django_db
MSK = ZoneInfo("Europe/Moscow")


def ev(message: Message, state: str, seq: int, **kw: Any) -> CallEvent:
    return CallEvent(
        provider="sip",
        call_id=f"sip-{message.pk}",
        state=CallState(state),
        direction=CallDirection.OUTBOUND,
        occurred_at=kw.pop("at", timezone.now()),
        to_number=message.recipient,
        sequence=f"{seq:03d}-{state}",
        message_id=message.pk,
        **kw,
    )


@pytest.fixture
def call_window(db: None) -> ContactPolicy:
    policy = ContactPolicy.objects.create(name="calls 9-21", is_active=True)
    ChannelRule.objects.create(
        policy=policy,
        channel=Channel.CALL,
        weekday_start=dt.time(9),
        weekday_end=dt.time(21),
        weekend_start=dt.time(10),
        weekend_end=dt.time(20),
    )
    return policy


# Events and DTMF ------------------------------------------------------------------------------


def test_press_2_replayed_and_reordered_withdraws_once(
    make_call: Any, django_assert_max_num_queries: Any
) -> None:
    client = ClientFactory(time_zone="Europe/Moscow")
    grant_calls([client])
    message = make_call(client)
    events = [
        ev(message, "ringing", 0),
        ev(message, "answered", 1),
        ev(message, "dtmf", 2, digits="2"),
        ev(message, "ended", 3, disposition="answered", duration=7),
    ]

    with django_assert_max_num_queries(25):
        call_events_apply(events=list(reversed(events)))
    again = call_events_apply(events=events)

    message.refresh_from_db()
    assert (message.status, message.dtmf, message.call_duration) == ("answered", "2", 7)
    assert (again.recorded, again.processed) == (0, 0)
    assert ConsentEvent.objects.filter(client=client, source="ivr", channel="call").count() == 1
    assert NumberBlock.objects.get().reason == NumberBlockReason.DO_NOT_CALL
    assert numbers_blocked([message.recipient, "+79990000000"]) == {message.recipient}
    assert not CallbackRequest.objects.exists()


def test_press_1_twice_in_one_call_opens_one_request(make_call: Any) -> None:
    message = make_call()

    call_events_apply(events=[ev(message, "dtmf", 2, digits="1")])
    call_events_apply(events=[ev(message, "dtmf", 3, digits="1")])

    assert CallbackRequest.objects.filter(message=message).count() == 1
    message.refresh_from_db()
    assert (message.status, message.dtmf) == (MessageStatus.DIALING, "11")


def test_digit_meanings_come_from_settings(make_call: Any, settings: Any) -> None:
    settings.VOICE_DTMF_ACTIONS = {"9": "wrong_number", "1": "callback"}
    message = make_call()

    call_events_apply(
        events=[ev(message, "dtmf", 1, digits="2"), ev(message, "dtmf", 2, digits="9")]
    )

    assert list(NumberBlock.objects.values_list("phone", "reason")) == [
        (message.recipient, NumberBlockReason.WRONG_NUMBER)
    ]
    assert not ConsentEvent.objects.filter(source="ivr").exists()


def test_events_wait_until_dispatch_marks_the_message_sent(make_call: Any) -> None:
    message = make_call(status=MessageStatus.QUEUED)

    first = call_events_apply(events=[ev(message, "ended", 1, disposition="busy")])
    message.refresh_from_db()
    assert (first.waiting, message.status) == (1, MessageStatus.QUEUED)
    assert not Call.objects.exists()

    Message.objects.filter(pk=message.pk).update(status=MessageStatus.SENT)
    swept = call_events_process()

    message.refresh_from_db()
    assert (swept.processed, message.status) == (1, MessageStatus.BUSY)
    assert not GatewayEvent.objects.filter(processed_at__isnull=True).exists()


def test_a_cancelled_message_is_not_moved_by_a_late_result(make_call: Any) -> None:
    message = make_call(status=MessageStatus.CANCELLED)

    call_events_apply(events=[ev(message, "ended", 1, disposition="answered", duration=3)])

    message.refresh_from_db()
    assert message.status == MessageStatus.CANCELLED
    assert Call.objects.get().disposition == "answered"


def test_stale_dialer_calls_are_closed_as_failed(make_call: Any, settings: Any) -> None:
    settings.VOICE_STALE_CALL_MINUTES = 15
    message = make_call(status=MessageStatus.DIALING)
    call_events_apply(
        events=[ev(message, "ringing", 0, at=timezone.now() - dt.timedelta(minutes=20))]
    )

    assert calls_close_stale() == 1

    message.refresh_from_db()
    assert message.status == MessageStatus.FAILED
    assert Call.objects.get().state == CallState.ENDED


# Retries, window, caps -----------------------------------------------------------------------


def test_retry_waits_for_the_next_call_window(
    make_call: Any, call_window: ContactPolicy, settings: Any
) -> None:
    settings.VOICE_RETRY_MINUTES = 30
    now = dt.datetime(2026, 3, 4, 20, 50, tzinfo=MSK)  # Wednesday, the window closes at 21:00
    message = make_call(status=MessageStatus.BUSY, sent_at=now)

    (retry,) = call_retries_schedule(messages=[message], now=now)

    assert retry.scheduled_for == dt.datetime(2026, 3, 5, 9, 0, tzinfo=MSK)
    assert retry.idempotency_key == f"{message.idempotency_key}#r2"
    # A replay of the same outcome plans nothing new.
    call_retries_schedule(messages=[message], now=now)
    assert Message.objects.filter(status=MessageStatus.PLANNED).count() == 1


def test_retry_inside_the_window_after_the_delay(
    make_call: Any, call_window: ContactPolicy, settings: Any
) -> None:
    settings.VOICE_RETRY_MINUTES = 45
    now = dt.datetime(2026, 3, 4, 12, 0, tzinfo=MSK)
    message = make_call(status=MessageStatus.NO_ANSWER, sent_at=now)

    (retry,) = call_retries_schedule(messages=[message], now=now)

    assert retry.scheduled_for == now + dt.timedelta(minutes=45)


def test_no_retry_after_the_last_attempt_or_past_expiry(
    make_call: Any, call_window: ContactPolicy, settings: Any
) -> None:
    settings.VOICE_MAX_ATTEMPTS = 3
    now = dt.datetime(2026, 3, 4, 12, 0, tzinfo=MSK)
    last = make_call(status=MessageStatus.BUSY, key="run:1:1:call#r3", sent_at=now)
    expiring = make_call(
        status=MessageStatus.BUSY, sent_at=now, expires_at=now + dt.timedelta(minutes=10)
    )

    assert call_retries_schedule(messages=[last, expiring], now=now) == []


def test_daily_and_weekly_caps_per_number(
    make_call: Any, call_window: ContactPolicy, settings: Any
) -> None:
    settings.VOICE_DAILY_CAP, settings.VOICE_WEEKLY_CAP = 2, 3
    settings.VOICE_RETRY_MINUTES = 30
    now = dt.datetime(2026, 3, 4, 12, 0, tzinfo=MSK)
    client = ClientFactory(time_zone="Europe/Moscow")
    earlier = make_call(
        client, status=MessageStatus.NO_ANSWER, key="a", sent_at=now - dt.timedelta(hours=3)
    )
    message = make_call(client, status=MessageStatus.BUSY, key="b", sent_at=now)

    (retry,) = call_retries_schedule(messages=[message], now=now)

    # Two calls in the last 24 hours: the next may go 24 hours after the earlier one.
    assert retry.scheduled_for == earlier.sent_at + dt.timedelta(hours=24)
    assert numbers_over_cap([message.recipient], now=now) == {message.recipient}
    assert numbers_over_cap([message.recipient], now=now + dt.timedelta(hours=22)) == set()

    make_call(client, status=MessageStatus.ANSWERED, key="c", sent_at=now - dt.timedelta(days=3))
    Message.objects.filter(status=MessageStatus.PLANNED).delete()
    (retry,) = call_retries_schedule(messages=[message], now=now)
    # Three calls this week: wait until the oldest of them is a week old (then the window).
    assert retry.scheduled_for == (now - dt.timedelta(days=3) + dt.timedelta(days=7))


def test_caps_hold_for_first_attempts_at_dispatch(
    make_call: Any, call_window: ContactPolicy, settings: Any
) -> None:
    # Given caps of 2 calls a day and 3 a week, a number dialled twice today by other runs,
    # and first attempts (no retry among them) due now
    settings.VOICE_DAILY_CAP, settings.VOICE_WEEKLY_CAP = 2, 3
    now = dt.datetime(2026, 3, 4, 12, 0, tzinfo=MSK)
    busy, shared, fresh = (ClientFactory(time_zone="Europe/Moscow") for _ in range(3))
    earlier = make_call(
        busy,
        status=MessageStatus.NO_ANSWER,
        key="run:7:a:call",
        sent_at=now - dt.timedelta(hours=3),
    )
    make_call(
        busy, status=MessageStatus.ANSWERED, key="run:8:a:call", sent_at=now - dt.timedelta(hours=1)
    )
    capped = make_call(busy, status=MessageStatus.PLANNED, key="run:9:a:call", sent_at=now)
    # ... a number with one call left today and two first attempts for it in the same chunk
    make_call(
        shared, status=MessageStatus.BUSY, key="run:7:b:call", sent_at=now - dt.timedelta(hours=2)
    )
    first = make_call(shared, status=MessageStatus.PLANNED, key="run:9:b:call", sent_at=now)
    second = make_call(shared, status=MessageStatus.PLANNED, key="run:10:b:call", sent_at=now)
    free = make_call(fresh, status=MessageStatus.PLANNED, key="run:9:c:call", sent_at=now)

    # When dispatch runs
    result = dispatch_due(channels=[Channel.CALL], now=now)

    # Then only the calls the caps allow are placed: one for the shared number, one fresh
    assert sorted(m.id for m in locmem.outbox) == sorted([first.pk, free.pk])
    assert result.counts == {"sent": 2, "deferred": 2}
    # ... the capped first attempts wait for the cap (24 h after the older of today's calls),
    # inside the call window, and are not sent in the meantime
    capped.refresh_from_db()
    second.refresh_from_db()
    assert (capped.status, capped.scheduled_for) == (
        MessageStatus.PLANNED,
        earlier.sent_at + dt.timedelta(hours=24),
    )
    assert capped.status_reason == "deferred: the number's daily or weekly call cap"
    assert (second.status, second.scheduled_for) == (
        MessageStatus.PLANNED,
        dt.datetime(2026, 3, 5, 10, 0, tzinfo=MSK),  # 24 h after its earlier call at 10:00
    )
    assert dispatch_due(channels=[Channel.CALL], now=now + dt.timedelta(hours=20)).counts == {}
    # ... and go out once it allows them
    later = dispatch_due(channels=[Channel.CALL], now=earlier.sent_at + dt.timedelta(hours=24))
    assert later.counts == {"sent": 1}
    assert locmem.outbox[-1].id == capped.pk


def test_retry_keys_stay_within_the_column() -> None:
    long_key = "firing:" + "x" * 75
    assert len(retry_key(long_key, 2)) <= 80
    assert retry_key(retry_key(long_key, 2), 3).endswith("#r3")
    assert retry_key("run:1:2:call#r2", 3) == "run:1:2:call#r3"


# The SIP backend ------------------------------------------------------------------------------


def test_sip_backend_queues_for_the_dialer(tmp_path: Path) -> None:
    backend = SipBackend(channel="call", prompt_dir=str(tmp_path), work_dir=str(tmp_path))
    messages = [
        OutgoingMessage(
            id=1, idempotency_key="k1", channel="call", to="+79161234567", text="Привет"
        ),
        OutgoingMessage(id=2, idempotency_key="k2", channel="call", to="12", text="Привет"),
    ]

    results = backend.send_messages(messages)

    assert [(r.status, r.provider_id) for r in results] == [
        (SendStatus.SENT, "sip-1"),
        (SendStatus.FAILED, ""),
    ]
    with pytest.raises(NotSupported):
        backend.originate(extension="101", number="+79161234567")


def test_prompt_is_8khz_mono_padded_and_cached(sip_peers: None, tmp_path: Path) -> None:
    first = render_prompt("Здравствуйте! Нажмите один.", directory=tmp_path, pad_seconds=4)
    mtime = first.stat().st_mtime_ns

    again = render_prompt("Здравствуйте! Нажмите один.", directory=tmp_path, pad_seconds=4)

    assert again == first and again.stat().st_mtime_ns == mtime
    with wave.open(str(first)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert w.getnframes() / 8000 > 4  # speech plus the DTMF window


# The dialer's own checks ------------------------------------------------------------------


def _handed_to_dialer(client: Any, now: dt.datetime, key: str) -> Message:
    """A call message dispatch has handed to the SIP dialer (dialing, no Call row yet)."""
    return Message.objects.create(
        client=client,
        channel=Channel.CALL,
        recipient=client.phone.as_e164,
        text="Здравствуйте!",
        scheduled_for=now,
        sent_at=now,
        status=MessageStatus.DIALING,
        provider_id=f"sip-{key}",
        idempotency_key=key,
    )


def test_the_dialer_checks_consent_and_the_call_window_again(call_window: Any) -> None:
    from crm.services import consent_record
    from messaging.services.calls import dial_jobs_claim

    noon = dt.datetime(2026, 3, 4, 12, 0, tzinfo=MSK)  # a Wednesday, inside 9-21
    keeps, withdrew = ClientFactory(), ClientFactory()
    far_east = ClientFactory(time_zone="Asia/Kamchatka")  # 21:00 there: the window is closed
    grant_calls([keeps, withdrew, far_east])
    kept = _handed_to_dialer(keeps, noon, "dial:1")
    stopped = _handed_to_dialer(withdrew, noon, "dial:2")
    waits = _handed_to_dialer(far_east, noon, "dial:3")
    # Withdrawn after dispatch handed the call over: no longer pending, so only the dialer
    # can stop it.
    consent_record(
        client=withdrew,
        channel=Channel.CALL,
        purpose="marketing",
        action="withdrawn",
        source="call_center",
        wording_version="v1",
    )

    jobs = dial_jobs_claim(provider="sip", limit=10, now=noon)

    assert [job.message_id for job in jobs] == [kept.pk]
    stopped.refresh_from_db()
    assert (stopped.status, stopped.status_reason) == (
        MessageStatus.CANCELLED,
        "no consent at dial time",
    )
    waits.refresh_from_db()
    assert waits.status == MessageStatus.PLANNED
    assert waits.scheduled_for == dt.datetime(2026, 3, 5, 9, 0, tzinfo=ZoneInfo("Asia/Kamchatka"))
