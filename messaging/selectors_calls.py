"""Reads about calls for the client card: the operator's incoming-call pop-up."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.db.models import QuerySet

from messaging.models import Call, CallDirection, NumberBlock


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
