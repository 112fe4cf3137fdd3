"""Reads about calls: the operator's incoming-call pop-up, blocked numbers and per-number caps."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable

from django.conf import settings
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from crm.models import Channel
from messaging.models import Call, CallDirection, Message, MessageStatus, NumberBlock

# A number counts as dialled by these messages (caps per number).
DIALLED_STATUSES = [
    MessageStatus.SENT,
    MessageStatus.DIALING,
    MessageStatus.ANSWERED,
    MessageStatus.BUSY,
    MessageStatus.NO_ANSWER,
]
# First key of the advisory locks that serialize dialling decisions per number (``LC``).
_DIAL_LOCK_CLASS = 0x4C43


def incoming_calls_for_extension(extension: str, since: dt.datetime) -> QuerySet[Call]:
    """Incoming calls that rang ``extension`` since ``since``, newest first, with their client."""
    return (
        Call.objects.filter(
            direction=CallDirection.INBOUND, extension=extension, started_at__gte=since
        )
        .select_related("client")
        .order_by("-started_at")
    )


def numbers_blocked(phones: Iterable[str]) -> set[str]:
    """Numbers never to dial again (asked not to be called, or a wrong number)."""
    wanted = {phone for phone in phones if phone}
    if not wanted:
        return set()
    return set(NumberBlock.objects.filter(phone__in=wanted).values_list("phone", flat=True))


def number_dials(
    phones: Iterable[str], *, now: dt.datetime, lock: bool = False
) -> dict[str, list[dt.datetime]]:
    """When each number was dialled in the week up to ``now``, oldest first (one query).

    ``lock`` (inside a transaction): first take a transaction-scoped lock per number, in a fixed
    order, so two workers deciding about the same number take turns and the second one sees the
    first one's call. Without it, both could read "one call left" and both dial.
    """
    wanted = sorted({phone for phone in phones if phone})
    if not wanted:
        return {}
    if lock and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, s.h) FROM "
                "(SELECT DISTINCT hashtext(p) AS h FROM unnest(%s::text[]) AS p ORDER BY 1) AS s",
                [_DIAL_LOCK_CLASS, wanted],
            )
    # SQLite: the IMMEDIATE transaction already keeps every other writer out.
    dials: dict[str, list[dt.datetime]] = defaultdict(list)
    for phone, sent_at in Message.objects.filter(
        channel=Channel.CALL,
        recipient__in=wanted,
        status__in=DIALLED_STATUSES,
        sent_at__gte=now - dt.timedelta(days=7),
        sent_at__lte=now,
    ).values_list("recipient", "sent_at"):
        if sent_at is not None:
            dials[phone].append(sent_at)
    for times in dials.values():
        times.sort()
    return dials


def earliest_by_caps(dials: list[dt.datetime], at: dt.datetime) -> dt.datetime | None:
    """The first instant >= ``at`` at which one more call keeps the daily and weekly caps
    (``VOICE_DAILY_CAP`` per 24 hours, ``VOICE_WEEKLY_CAP`` per 7 days, both rolling); None when
    a cap below 1 allows no call at all."""
    daily, weekly = settings.VOICE_DAILY_CAP, settings.VOICE_WEEKLY_CAP
    if daily < 1 or weekly < 1:
        return None
    for _ in range(daily + weekly + 2):
        day = [d for d in dials if d > at - dt.timedelta(hours=24)]
        week = [d for d in dials if d > at - dt.timedelta(days=7)]
        if len(week) >= weekly:
            at = week[len(week) - weekly] + dt.timedelta(days=7)
        elif len(day) >= daily:
            at = day[len(day) - daily] + dt.timedelta(hours=24)
        else:
            return at
    return at


def numbers_over_cap(phones: Iterable[str], *, now: dt.datetime | None = None) -> set[str]:
    """Numbers that may not be dialled now: their daily or weekly cap is reached."""
    now = now or timezone.now()
    dials = number_dials(phones, now=now)
    return {p for p, times in dials.items() if earliest_by_caps(times, now) != now}
