"""Reads for the operator's card: one client on one screen, in a bounded number of queries.

The card composes the client domain (``crm.selectors.client_card``), loyalty, the offer
engine's next best offers with their reasons, and messaging (message history, callback queue,
incoming calls). Every list is limited or paginated, so a client with 1,000 purchases and 200
messages costs the same number of queries as a new one.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import connection, models
from django.db.models import Count, Max, Min, QuerySet, Sum
from django.utils import timezone, translation

from crm.models import (
    Channel,
    Child,
    Client,
    Consent,
    ConsentPurpose,
    ConsentSource,
    Event,
    EventType,
    Gender,
    Interest,
    OperatorProfile,
    Pet,
    PetKind,
    Purchase,
    SalesChannel,
)
from crm.selectors import client_card, client_search

PURCHASES_PER_PAGE = 10
RECENT_MESSAGES = 20
RECENT_EVENTS = 15
SEARCH_LIMIT = 20
CENT = Decimal("0.01")
# An incoming call pops up on the operator's screen for this long after it started ringing.
INCOMING_WINDOW = dt.timedelta(minutes=1)
# The offer engine's catalog snapshot (products, categories, popularity over 90 days) is the
# same for every client; reading it per card would cost three queries and, at a million
# clients, a scan of recent purchase items. A card may show a product added minutes ago late.
CATALOG_TTL_SECONDS = 120.0


@functools.cache
def _labels_in(choices: type[models.Choices], language: str | None) -> dict[Any, str]:
    return {value: str(label) for value, label in choices.choices}


def _labels(choices: type[models.Choices]) -> dict[Any, str]:
    """A vocabulary's labels in the current language, translated once per process (the
    model's ``get_FOO_display`` costs a lazy translation per row)."""
    return _labels_in(choices, translation.get_language())


# Search ------------------------------------------------------------------------------------------


def card_search(term: str, *, limit: int = SEARCH_LIMIT) -> list[Client]:
    """Clients matching a phone in any format, a name, an e-mail or an external id."""
    if not " ".join((term or "").split()):
        return []
    queryset = client_search(Client.objects.all(), term).order_by("last_name", "first_name", "pk")
    return list(queryset[:limit])


# The card ----------------------------------------------------------------------------------------


def card_read(
    *, client_id: int, page: int = 1, at: dt.datetime | None = None
) -> dict[str, Any] | None:
    """Everything the operator sees about one client, as plain data (the page and its JSON),
    in 9 queries whatever the history. The next best offers are read apart (``next_offers``):
    the engine's queries grow with the live offers, and the profile must not wait for them."""
    at = at or timezone.now()
    page = max(1, page)
    card = client_card(
        client_id=client_id,
        purchases_offset=(page - 1) * PURCHASES_PER_PAGE,
        purchases_limit=PURCHASES_PER_PAGE,
    )
    if card is None:
        return None
    client: Client = card["profile"]
    figures = _figures(client_id)
    pages = max(1, math.ceil(figures["purchases"] / PURCHASES_PER_PAGE))
    return {
        "client": _profile(client, at),
        "loyalty": card["loyalty"],
        "consents": _consents(card["consents"]),
        "family": _family(client_id, at),
        "figures": figures,
        "purchases": {
            "page": page,
            "pages": pages,
            "per_page": PURCHASES_PER_PAGE,
            "total": figures["purchases"],
            "has_previous": page > 1,
            "has_next": page < pages,
            "items": [_purchase(p) for p in card["recent_purchases"]],
        },
        "events": _events(client_id),
        "messages": _messages(client_id),
    }


def _profile(client: Client, at: dt.datetime) -> dict[str, Any]:
    from messaging.services.policy import zone as policy_zone

    zone = policy_zone(str(client.time_zone))  # the zone the send time is placed in
    local = at.astimezone(zone)
    return {
        "id": client.pk,
        "name": str(client),
        "last_name": client.last_name,
        "first_name": client.first_name,
        "middle_name": client.middle_name,
        "gender": client.gender,
        "gender_display": str(client.get_gender_display()) if client.gender else "",
        "birth_date": client.birth_date,
        "age": _age(client.birth_date, local.date()),
        "phone": client.phone.as_e164 if client.phone else "",
        "phone_display": client.phone.as_international if client.phone else "",
        "email": client.email,
        "external_id": client.external_id or "",
        "city": client.city,
        "region": client.region,
        "time_zone": str(zone.key),
        "local_time": local,
        "preferred_channel": client.preferred_channel,
        "preferred_channel_display": str(client.get_preferred_channel_display())
        if client.preferred_channel
        else "",
        "preferred_contact_time": client.preferred_contact_time,
        "preferred_contact_time_display": str(client.get_preferred_contact_time_display())
        if client.preferred_contact_time
        else "",
        "family_status": client.family_status,
        "family_status_display": str(client.get_family_status_display())
        if client.family_status
        else "",
        "occupation": client.occupation,
        "education": str(client.get_education_display()) if client.education else "",
        "source": str(client.get_source_display()),
        "is_anonymized": client.is_anonymized,
        "client_since": client.created_at,
    }


def _age(birth: dt.date | None, today: dt.date) -> int | None:
    if birth is None:
        return None
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def _consents(rows: list[Consent]) -> list[dict[str, Any]]:
    """Marketing consent for every channel (recorded or not), then any other purpose."""
    by_key = {(c.channel, c.purpose): c for c in rows}
    channels, purposes, sources = _labels(Channel), _labels(ConsentPurpose), _labels(ConsentSource)
    keys = [(str(ch), str(ConsentPurpose.MARKETING)) for ch in Channel.values]
    keys += sorted(k for k in by_key if k not in keys)
    out = []
    for channel, purpose in keys:
        consent = by_key.get((channel, purpose))
        out.append(
            {
                "channel": channel,
                "channel_display": channels.get(channel, channel),
                "purpose": purpose,
                "purpose_display": purposes.get(purpose, purpose),
                "is_granted": None if consent is None else consent.is_granted,
                "changed_at": consent.changed_at if consent else None,
                "source": consent.source if consent else "",
                "source_display": sources.get(consent.source, "") if consent else "",
                "wording_version": consent.wording_version if consent else "",
            }
        )
    return out


def _family(client_id: int, at: dt.datetime) -> dict[str, list[Any]]:
    """Children, pets and interests in one statement."""
    interests = Client.interests.through._meta.db_table
    sql = (
        f"SELECT 'child', gender, birth_year, '' FROM {Child._meta.db_table} WHERE client_id = %s "
        f"UNION ALL SELECT 'pet', kind, NULL, name FROM {Pet._meta.db_table} WHERE client_id = %s "
        f"UNION ALL SELECT 'interest', i.name, NULL, '' FROM {interests} ci "
        f"JOIN {Interest._meta.db_table} i ON i.id = ci.interest_id WHERE ci.client_id = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [client_id, client_id, client_id])
        rows = cursor.fetchall()
    family: dict[str, list[Any]] = {"children": [], "pets": [], "interests": []}
    for kind, label, number, name in rows:
        if kind == "child":
            family["children"].append(
                {
                    "birth_year": number,
                    "age": at.year - int(number) if number else None,
                    "gender": label,
                    "gender_display": str(Gender(label).label) if label else "",
                }
            )
        elif kind == "pet":
            family["pets"].append(
                {
                    "kind": label,
                    "kind_display": str(PetKind(label).label) if label in PetKind.values else label,
                    "name": name,
                }
            )
        else:
            family["interests"].append(label)
    family["children"].sort(key=lambda c: c["birth_year"] or 0)
    family["interests"].sort()
    return family


def _figures(client_id: int) -> dict[str, Any]:
    """Lifetime spend, average check, first and last purchase and the usual gap between
    purchases, from one aggregate over the client's purchases."""
    row = Purchase.objects.filter(client_id=client_id).aggregate(
        count=Count("id"), spend=Sum("total"), first=Min("purchased_at"), last=Max("purchased_at")
    )
    count = int(row["count"] or 0)
    spend = Decimal(row["spend"] or 0).quantize(CENT)
    cadence = None
    if count > 1 and row["first"] and row["last"]:
        cadence = round((row["last"] - row["first"]).total_seconds() / 86400 / (count - 1), 1)
    return {
        "purchases": count,
        "lifetime_spend": spend,
        "average_check": (spend / count).quantize(CENT) if count else None,
        "first_purchase": row["first"],
        "last_purchase": row["last"],
        "cadence_days": cadence,
    }


def _purchase(purchase: Purchase) -> dict[str, Any]:
    return {
        "id": purchase.pk,
        "external_id": purchase.external_id or "",
        "purchased_at": purchase.purchased_at,
        "channel": purchase.channel,
        "channel_display": _labels(SalesChannel).get(purchase.channel, purchase.channel),
        "store": purchase.store,
        "total": purchase.total,
        "items": [
            {
                "product_id": item.product_id,
                "product": item.product.name,
                "quantity": item.quantity.normalize(),
                "unit_price": item.unit_price,
                "discount": item.discount,
            }
            for item in purchase.items.all()
        ],
    }


def _events(client_id: int) -> list[dict[str, Any]]:
    from messaging.services.operator import CallOutcome

    outcomes, types = _labels(CallOutcome), _labels(EventType)
    rows = (
        Event.objects.filter(client_id=client_id)
        .select_related("product")
        .order_by("-occurred_at", "-id")[:RECENT_EVENTS]
    )
    return [
        {
            "type": e.type,
            "type_display": types.get(e.type, e.type),
            "occurred_at": e.occurred_at,
            "product": e.product.name if e.product else "",
            "outcome": str(e.payload.get("outcome", "")) if isinstance(e.payload, dict) else "",
            "outcome_display": outcomes.get(e.payload.get("outcome"), "")
            if isinstance(e.payload, dict)
            else "",
            "note": str(e.payload.get("note", "")) if isinstance(e.payload, dict) else "",
            "operator": str(e.payload.get("operator", "")) if isinstance(e.payload, dict) else "",
        }
        for e in rows
    ]


def _messages(client_id: int) -> list[dict[str, Any]]:
    from messaging.models import Message, MessageStatus

    channels, statuses = _labels(Channel), _labels(MessageStatus)
    rows = (
        Message.objects.filter(client_id=client_id)
        .select_related("offer")
        .only(
            "id",
            "channel",
            "status",
            "status_reason",
            "scheduled_for",
            "sent_at",
            "delivered_at",
            "clicked_at",
            "text",
            "reason",
            "dtmf",
            "call_duration",
            "offer__name",
        )
        .order_by("-scheduled_for", "-id")[:RECENT_MESSAGES]
    )
    return [
        {
            "id": m.pk,
            "channel": m.channel,
            "channel_display": channels.get(m.channel, m.channel),
            "status": m.status,
            "status_display": statuses.get(m.status, m.status),
            "status_reason": m.status_reason,
            "scheduled_for": m.scheduled_for,
            "sent_at": m.sent_at,
            "delivered_at": m.delivered_at,
            "clicked_at": m.clicked_at,
            "offer": m.offer.name if m.offer else "",
            "text": m.text[:300],
            "reason": m.reason,
            "dtmf": m.dtmf,
            "call_duration": m.call_duration,
        }
        for m in rows
    ]


# Offers ------------------------------------------------------------------------------------------


@dataclass
class _CachedCatalog:
    loaded: float
    catalog: Any


_catalog_lock = threading.Lock()
_catalog_cache: _CachedCatalog | None = None


def catalog_snapshot(at: dt.datetime) -> Any:
    """The offer engine's catalog, reloaded at most every ``CATALOG_TTL_SECONDS``."""
    global _catalog_cache
    from offers.catalog import Catalog

    with _catalog_lock:
        cached = _catalog_cache
        if cached is None or time.monotonic() - cached.loaded > CATALOG_TTL_SECONDS:
            cached = _CachedCatalog(time.monotonic(), Catalog.load(at=at))
            _catalog_cache = cached
        return cached.catalog


def catalog_cache_clear() -> None:
    global _catalog_cache
    with _catalog_lock:
        _catalog_cache = None


def next_offers(*, client_id: int, at: dt.datetime | None = None) -> list[dict[str, Any]]:
    """The client's next best offers, best first, each with the reason the operator reads
    aloud (the same engine and reason as in the client's messages). Like
    ``offers.selectors.next_best_offers`` (control-group clients are not offered by phone
    either), with the shared catalog snapshot."""
    from offers.engine import propose

    at = at or timezone.now()
    proposals = [
        p
        for p in propose([client_id], at=at, catalog=catalog_snapshot(at))
        if not p.is_control and p.client_id == client_id
    ]
    return [
        {
            "offer_id": p.offer_id,
            "offer": p.offer_name,
            "priority": p.priority,
            "reason": p.reason,
            "products": [str(item.get("name", "")) for item in p.products],
            "valid_until": p.valid_until,
            "channels": list(p.channels),
            "sms_text": p.texts["sms"].text if "sms" in p.texts else "",
            "call_script": p.texts["call"].text if "call" in p.texts else "",
            "can_sms": Channel.SMS in p.channels and "sms" in p.texts,
        }
        for p in proposals
    ]


# Callback queue and incoming calls ---------------------------------------------------------------


def callback_queue(*, limit: int = 50) -> QuerySet[Any]:
    """Open callback requests, oldest first, with the client and the offer that prompted them."""
    from messaging.models import CallbackRequest, CallbackStatus

    return (
        CallbackRequest.objects.filter(status=CallbackStatus.OPEN)
        .select_related("client", "offer")
        .order_by("created_at", "id")[:limit]
    )


def callbacks_taken_by(*, user: Any, limit: int = 20) -> QuerySet[Any]:
    from messaging.models import CallbackRequest, CallbackStatus

    return (
        CallbackRequest.objects.filter(status=CallbackStatus.TAKEN, taken_by=user)
        .select_related("client", "offer")
        .order_by("-taken_at", "-id")[:limit]
    )


def callback_request(request_id: str, client_id: int) -> Any | None:
    """The callback request the operator took to open this card (its offer and reason)."""
    from messaging.models import CallbackRequest

    if not request_id.isdigit():
        return None
    return (
        CallbackRequest.objects.filter(pk=int(request_id), client_id=client_id)
        .select_related("offer")
        .first()
    )


def operator_extension(user: Any) -> str:
    value = (
        OperatorProfile.objects.filter(user_id=user.pk).values_list("extension", flat=True).first()
    )
    return value or ""


def incoming_call(*, extension: str, now: dt.datetime | None = None) -> dict[str, Any] | None:
    """The latest call ringing the extension now (inbound, still ringing, started within the
    last minute), with its client when the number is known."""
    from messaging.models import CallState
    from messaging.selectors_calls import incoming_calls_for_extension

    if not extension:
        return None
    now = now or timezone.now()
    call = (
        incoming_calls_for_extension(extension, now - INCOMING_WINDOW)
        .filter(state=CallState.RINGING)
        .first()
    )
    if call is None:
        return None
    client = call.client
    return {
        "call_id": call.pk,
        "from": call.from_number,
        "started_at": call.started_at,
        "client_id": client.pk if client else None,
        "client": str(client) if client else "",
    }
