"""The contact policy in force: caps, gaps, quiet hours and send-time placement.

Everything here is pure computation over a :class:`Policy` snapshot (loaded once per batch with
:func:`active_policy`), so planning and dispatch can apply it to thousands of clients without a
query per client. Quiet hours are the client's local hours; a send time is always placed inside
the channel's window for that day of the week.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from zoneinfo import ZoneInfo

from django.conf import settings

from crm.models import Channel, ContactTime
from messaging.models import ChannelRule, ContactPolicy, OfferContactRule, TimeTarget

# How far ahead a send time is searched for; beyond it a message is dropped as "no window".
SEARCH_DAYS = 14


@dataclass(frozen=True)
class ChannelWindow:
    limit: int
    window: dt.timedelta
    weekday: tuple[dt.time, dt.time]
    weekend: tuple[dt.time, dt.time]

    def hours(self, day: dt.date) -> tuple[dt.time, dt.time]:
        return self.weekend if day.weekday() >= 5 else self.weekday


@dataclass(frozen=True)
class OfferCap:
    limit: int
    window: dt.timedelta


@dataclass(frozen=True)
class OfferRule:
    cap: OfferCap
    min_gap: dt.timedelta | None
    total_limit: int | None


@dataclass(frozen=True)
class Policy:
    total_limit: int
    total_window: dt.timedelta
    min_gap: dt.timedelta
    channels: dict[str, ChannelWindow]
    parts: dict[str, tuple[dt.time, dt.time]]
    learn_preferred_time: bool = True
    offer_rules: dict[int, OfferRule] = field(default_factory=dict)

    def for_offer(self, offer_id: int | None) -> Policy:
        """The policy with an offer's overrides applied (its own gap and cross-channel cap)."""
        rule = self.offer_rules.get(offer_id) if offer_id else None
        if rule is None:
            return self
        return replace(
            self,
            min_gap=self.min_gap if rule.min_gap is None else rule.min_gap,
            total_limit=self.total_limit if rule.total_limit is None else rule.total_limit,
        )

    def offer_cap(self, offer_id: int | None) -> OfferCap | None:
        if not offer_id:
            return None
        rule = self.offer_rules.get(offer_id)
        if rule is None:
            return OfferCap(
                settings.MESSAGING_OFFER_DEFAULT_LIMIT,
                dt.timedelta(days=settings.MESSAGING_OFFER_DEFAULT_WINDOW_DAYS),
            )
        return rule.cap

    @property
    def widest_window(self) -> dt.timedelta:
        """How far from a planned message another one can still count against it: every cap,
        gap and offer rule, including the default offer window."""
        default_offer = dt.timedelta(days=settings.MESSAGING_OFFER_DEFAULT_WINDOW_DAYS)
        return max(
            [
                self.total_window,
                self.min_gap,
                default_offer,
                *(c.window for c in self.channels.values()),
                *(r.cap.window for r in self.offer_rules.values()),
                *(r.min_gap for r in self.offer_rules.values() if r.min_gap is not None),
            ]
        )


_DEFAULT_RULES = {
    Channel.SMS: dict(limit=2, window_days=7, weekday=(9, 21), weekend=(10, 20)),
    Channel.CALL: dict(limit=1, window_days=7, weekday=(10, 20), weekend=(11, 18)),
    Channel.EMAIL: dict(limit=3, window_days=7, weekday=(8, 22), weekend=(9, 21)),
}


def _default_window(channel: str) -> ChannelWindow:
    spec = _DEFAULT_RULES[Channel(channel)]
    wd, we = spec["weekday"], spec["weekend"]
    return ChannelWindow(
        limit=int(spec["limit"]),  # type: ignore[call-overload]
        window=dt.timedelta(days=int(spec["window_days"])),  # type: ignore[call-overload]
        weekday=(dt.time(wd[0]), dt.time(wd[1])),  # type: ignore[index]
        weekend=(dt.time(we[0]), dt.time(we[1])),  # type: ignore[index]
    )


def _parts(morning: dt.time, afternoon: dt.time, evening: dt.time) -> dict[str, tuple]:
    return {
        ContactTime.MORNING: (morning, afternoon),
        ContactTime.AFTERNOON: (afternoon, evening),
        ContactTime.EVENING: (evening, dt.time.max),
    }


def default_policy() -> Policy:
    """What applies when no policy is active: the model's defaults, SMS 2 and calls 1 a week."""
    defaults = {f.name: f.default for f in ContactPolicy._meta.fields if f.has_default()}
    return Policy(
        total_limit=defaults["total_limit"],
        total_window=dt.timedelta(days=defaults["total_window_days"]),
        min_gap=dt.timedelta(hours=defaults["min_gap_hours"]),
        channels={c: _default_window(c) for c in Channel.values},
        parts=_parts(
            defaults["morning_start"], defaults["afternoon_start"], defaults["evening_start"]
        ),
        learn_preferred_time=defaults["learn_preferred_time"],
    )


def policy_from_model(policy: ContactPolicy, rules: Iterable[ChannelRule]) -> Policy:
    channels = {c: _default_window(c) for c in Channel.values}
    for rule in rules:
        channels[rule.channel] = ChannelWindow(
            limit=rule.limit,
            window=dt.timedelta(days=rule.window_days),
            weekday=(rule.weekday_start, rule.weekday_end),
            weekend=(rule.weekend_start, rule.weekend_end),
        )
    return Policy(
        total_limit=policy.total_limit,
        total_window=dt.timedelta(days=policy.total_window_days),
        min_gap=dt.timedelta(hours=policy.min_gap_hours),
        channels=channels,
        parts=_parts(policy.morning_start, policy.afternoon_start, policy.evening_start),
        learn_preferred_time=policy.learn_preferred_time,
    )


def active_policy() -> Policy:
    """The active policy with every offer's overrides (three queries), or the defaults."""
    model = ContactPolicy.objects.filter(is_active=True).first()
    policy = (
        default_policy() if model is None else policy_from_model(model, model.channel_rules.all())
    )
    return replace(policy, offer_rules=_offer_rules(OfferContactRule.objects.all()))


def _offer_rules(rules: Iterable[OfferContactRule]) -> dict[int, OfferRule]:
    return {
        r.offer_id: OfferRule(
            cap=OfferCap(r.max_per_client, dt.timedelta(days=r.window_days)),
            min_gap=None if r.min_gap_hours is None else dt.timedelta(hours=r.min_gap_hours),
            total_limit=r.total_limit,
        )
        for r in rules
    }


# Send-time placement --------------------------------------------------------------------------


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        return ZoneInfo(settings.TIME_ZONE)


def _allowed(
    policy: Policy, channel: str, day: dt.date, target: str, part: str
) -> tuple[dt.time, dt.time] | None:
    """The local hours of ``day`` in which a message may go out, or None."""
    if target == TimeTarget.WEEKEND and day.weekday() < 5:
        return None
    if target == TimeTarget.EVENING and day.weekday() >= 5:
        return None
    start, end = policy.channels[channel].hours(day)
    wanted = None
    if target == TimeTarget.EVENING:
        wanted = policy.parts[ContactTime.EVENING]
    elif target == TimeTarget.PREFERRED and part:
        wanted = policy.parts.get(part)
    if wanted is not None:
        narrowed = (max(start, wanted[0]), min(end, wanted[1]))
        if narrowed[0] < narrowed[1]:
            return narrowed
        if target == TimeTarget.EVENING:
            return None
        # The preferred part lies outside the channel's window that day: any window time will do.
    return start, end


def next_send_time(
    policy: Policy,
    *,
    channel: str,
    time_zone: str,
    earliest: dt.datetime,
    target: str = TimeTarget.PREFERRED,
    part: str = "",
) -> dt.datetime | None:
    """The first instant at or after ``earliest`` allowed by the channel's quiet hours in the
    client's time zone, placed in the preferred part of the day / weekend / evening if asked.
    None if nothing within ``SEARCH_DAYS``."""
    tz = zone(time_zone)
    local = earliest.astimezone(tz)
    for offset in range(SEARCH_DAYS + 1):
        day = local.date() + dt.timedelta(days=offset)
        hours = _allowed(policy, channel, day, target, part)
        if hours is None:
            continue
        opens = dt.datetime.combine(day, hours[0], tzinfo=tz)
        closes = (
            dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=tz)
            if hours[1] == dt.time.max
            else dt.datetime.combine(day, hours[1], tzinfo=tz)
        )
        candidate = max(opens, local)
        if candidate < closes:
            return candidate.astimezone(dt.UTC)
    return None


def is_quiet(policy: Policy, *, channel: str, time_zone: str, at: dt.datetime) -> bool:
    """True if ``at`` is outside the channel's window in the client's local time."""
    found = next_send_time(
        policy, channel=channel, time_zone=time_zone, earliest=at, target=TimeTarget.ASAP
    )
    return found != at


# Caps and gaps ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Contact:
    """A counted message of a client: when (scheduled or sent), on what channel, for what offer."""

    at: dt.datetime
    channel: str
    offer_id: int | None


def cap_violation(
    policy: Policy,
    *,
    channel: str,
    offer_id: int | None,
    at: dt.datetime,
    history: Sequence[Contact],
) -> str | None:
    """Why a message at ``at`` would break a cap or a gap, or None if it fits.

    Each cap is "at most N in any window of length W". Counting the messages within W on
    *either* side of ``at`` is a sufficient check: any window of length W that contains ``at``
    lies inside (at - W, at + W), so a count below N there keeps every such window at N or less.
    """
    effective = policy.for_offer(offer_id)
    for contact in history:
        if abs(contact.at - at) < effective.min_gap:
            return "min_gap"
    window = effective.channels[channel]
    if _near(history, at, window.window, channel=channel) >= window.limit:
        return "channel_cap"
    if _near(history, at, effective.total_window) >= effective.total_limit:
        return "total_cap"
    cap = effective.offer_cap(offer_id)
    if cap is not None and _near(history, at, cap.window, offer_id=offer_id) >= cap.limit:
        return "offer_cap"
    return None


def _near(
    history: Sequence[Contact],
    at: dt.datetime,
    window: dt.timedelta,
    *,
    channel: str | None = None,
    offer_id: int | None = None,
) -> int:
    return sum(
        1
        for c in history
        if abs(c.at - at) < window
        and (channel is None or c.channel == channel)
        and (offer_id is None or c.offer_id == offer_id)
    )
