"""Quiet hours in the client's local time, send-time placement, caps and gaps."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from crm.models import Channel
from messaging.models import TimeTarget
from messaging.services.policy import Contact, cap_violation, default_policy, next_send_time

MSK = ZoneInfo("Europe/Moscow")
VLAD = ZoneInfo("Asia/Vladivostok")  # MSK + 7
WED_NOON = dt.datetime(2026, 3, 4, 12, 0, tzinfo=MSK)


def test_a_message_inside_the_window_goes_at_once() -> None:
    policy = default_policy()
    at = next_send_time(
        policy,
        channel=Channel.SMS,
        time_zone="Europe/Moscow",
        earliest=WED_NOON,
        target=TimeTarget.ASAP,
    )
    assert at == WED_NOON


def test_quiet_hours_are_the_clients_local_hours() -> None:
    # Noon in Moscow is 19:00 in Vladivostok: inside SMS hours (9-21), outside call hours (10-20)
    # an hour later.
    policy = default_policy()
    sms = next_send_time(
        policy,
        channel=Channel.SMS,
        time_zone="Asia/Vladivostok",
        earliest=WED_NOON,
        target=TimeTarget.ASAP,
    )
    assert sms == WED_NOON
    late = WED_NOON + dt.timedelta(hours=1, minutes=30)  # 20:30 in Vladivostok
    call = next_send_time(
        policy,
        channel=Channel.CALL,
        time_zone="Asia/Vladivostok",
        earliest=late,
        target=TimeTarget.ASAP,
    )
    assert call == dt.datetime(2026, 3, 5, 10, 0, tzinfo=VLAD)


def test_weekend_hours_apply_on_saturday() -> None:
    policy = default_policy()
    friday_late = dt.datetime(2026, 3, 6, 21, 30, tzinfo=MSK)
    at = next_send_time(
        policy,
        channel=Channel.SMS,
        time_zone="Europe/Moscow",
        earliest=friday_late,
        target=TimeTarget.ASAP,
    )
    assert at == dt.datetime(2026, 3, 7, 10, 0, tzinfo=MSK)  # weekend window opens at 10


def test_preferred_part_of_the_day_places_the_message() -> None:
    policy = default_policy()
    at = next_send_time(
        policy, channel=Channel.SMS, time_zone="Europe/Moscow", earliest=WED_NOON, part="evening"
    )
    assert at == dt.datetime(2026, 3, 4, 18, 0, tzinfo=MSK)
    morning = next_send_time(
        policy, channel=Channel.SMS, time_zone="Europe/Moscow", earliest=WED_NOON, part="morning"
    )
    assert morning == dt.datetime(2026, 3, 5, 9, 0, tzinfo=MSK)


def test_weekend_and_evening_targets() -> None:
    policy = default_policy()
    weekend = next_send_time(
        policy,
        channel=Channel.SMS,
        time_zone="Europe/Moscow",
        earliest=WED_NOON,
        target=TimeTarget.WEEKEND,
    )
    assert weekend == dt.datetime(2026, 3, 7, 10, 0, tzinfo=MSK)
    saturday = dt.datetime(2026, 3, 7, 12, 0, tzinfo=MSK)
    evening = next_send_time(
        policy,
        channel=Channel.SMS,
        time_zone="Europe/Moscow",
        earliest=saturday,
        target=TimeTarget.EVENING,
    )
    assert evening == dt.datetime(2026, 3, 9, 18, 0, tzinfo=MSK)  # Monday: after work


def test_caps_and_gaps() -> None:
    policy = default_policy()  # SMS 2 / 7 days, all 3 / 7 days, gap 24 h, offer 1 / 30 days
    at = WED_NOON
    day = dt.timedelta(days=1)
    assert cap_violation(policy, channel="sms", offer_id=None, at=at, history=[]) is None
    recent = [Contact(at - dt.timedelta(hours=5), "email", None)]
    assert cap_violation(policy, channel="sms", offer_id=None, at=at, history=recent) == "min_gap"
    two_sms = [Contact(at - 2 * day, "sms", None), Contact(at - 4 * day, "sms", None)]
    assert (
        cap_violation(policy, channel="sms", offer_id=None, at=at, history=two_sms) == "channel_cap"
    )
    assert cap_violation(policy, channel="email", offer_id=None, at=at, history=two_sms) is None
    three = [*two_sms, Contact(at - 6 * day, "email", None)]
    assert (
        cap_violation(policy, channel="email", offer_id=None, at=at, history=three) == "total_cap"
    )
    same_offer = [Contact(at - 20 * day, "email", 7)]
    assert (
        cap_violation(policy, channel="sms", offer_id=7, at=at, history=same_offer) == "offer_cap"
    )
    assert cap_violation(policy, channel="sms", offer_id=8, at=at, history=same_offer) is None
    # A planned message in the future counts as well (either side of the window).
    ahead = [Contact(at + 2 * day, "sms", None), Contact(at + 3 * day, "sms", None)]
    assert (
        cap_violation(policy, channel="sms", offer_id=None, at=at, history=ahead) == "channel_cap"
    )
