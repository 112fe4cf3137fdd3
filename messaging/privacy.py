"""Messaging's personal data for ``crm.privacy``: messages, link clicks, inbound SMS, calls,
callback requests, trigger firings, attributed purchases and the gateways' raw events.

Anonymization keeps every row that results count (status, channel, offer, times, attribution)
and blanks what identifies or quotes the person: addresses, texts, reasons, promo codes in the
text, the personal link token, phone numbers of SMS and calls. Numbers on the do-not-call list
stay there: the list protects the person behind the number, whoever holds it now.

Gateway events keep what processing reads (state, error, direction, disposition, duration,
digits, extension) and lose the rest of the provider's payload (numbers, texts). An event belongs
to a client through one of their messages or, for inbound SMS and calls, which carry no message,
through one of their numbers (as stored, without "+", and in the Russian 8 form).
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from crm.models import Channel, Client
from crm.privacy import Rows, Section, register
from messaging.models import (
    Attribution,
    Call,
    CallbackRequest,
    CallDirection,
    EventKind,
    GatewayEvent,
    InboundSms,
    LinkClick,
    Message,
    TriggerFiring,
)

# Payload keys that event processing reads back; everything else is the provider's or personal.
EVENT_KEYS_KEPT = ("state", "error", "direction", "disposition", "duration", "digits", "extension")
_NUMBER_KEYS = ("sender", "recipient", "from_number", "to_number")


def export_messages(client_ids: Sequence[int]) -> Rows:
    return (
        Message.objects.filter(client_id__in=client_ids)
        .order_by("scheduled_for", "id")
        .values(
            "client_id",
            "id",
            "channel",
            "recipient",
            "subject",
            "text",
            "reason",
            "promo_code",
            "status",
            "status_reason",
            "scheduled_for",
            "sent_at",
            "delivered_at",
            "clicked_at",
            "call_duration",
            "dtmf",
            "offer__name",
            "run__campaign__name",
            "firing__scenario__name",
        )
    )


def export_link_clicks(client_ids: Sequence[int]) -> Rows:
    return (
        LinkClick.objects.filter(message__client_id__in=client_ids)
        .annotate(client_id=F("message__client_id"))
        .order_by("clicked_at", "id")
        .values("client_id", "message_id", "clicked_at", "user_agent")
    )


def export_inbound_sms(client_ids: Sequence[int]) -> Rows:
    return (
        InboundSms.objects.filter(client_id__in=client_ids)
        .order_by("received_at", "id")
        .values("client_id", "sender", "recipient", "text", "received_at", "is_stop")
    )


def export_calls(client_ids: Sequence[int]) -> Rows:
    return (
        Call.objects.filter(client_id__in=client_ids)
        .order_by("started_at", "id")
        .values(
            "client_id",
            "direction",
            "from_number",
            "to_number",
            "state",
            "disposition",
            "digits",
            "duration",
            "started_at",
        )
    )


def export_callbacks(client_ids: Sequence[int]) -> Rows:
    return (
        CallbackRequest.objects.filter(client_id__in=client_ids)
        .order_by("created_at", "id")
        .values("client_id", "source", "status", "reason", "created_at", "offer__name")
    )


def export_firings(client_ids: Sequence[int]) -> Rows:
    return (
        TriggerFiring.objects.filter(client_id__in=client_ids)
        .order_by("fired_at", "id")
        .values("client_id", "scenario__name", "occasion", "step", "fired_at", "status")
    )


def export_attributions(client_ids: Sequence[int]) -> Rows:
    return (
        Attribution.objects.filter(client_id__in=client_ids)
        .order_by("purchased_at", "id")
        .values("client_id", "message_id", "purchase_id", "offer__name", "purchased_at", "revenue")
    )


def _number_variants(number: str) -> set[str]:
    """A number as gateways may write it: E.164, without "+", and "8..." for Russian numbers."""
    digits = number.removeprefix("+")
    out = {number, digits}
    if number.startswith("+7") and len(digits) == 11:
        out.add("8" + digits[1:])
    return out


def _client_numbers(client_ids: Sequence[int]) -> dict[str, int]:
    """Every form of every number of these clients -> the client (one query)."""
    phones = Client.objects.filter(pk__in=client_ids).order_by().values_list("pk", "phone")
    sms_and_calls = Message.objects.filter(
        client_id__in=client_ids, channel__in=[Channel.SMS, Channel.CALL]
    ).values_list("client_id", "recipient")
    inbound = InboundSms.objects.filter(client_id__in=client_ids).values_list("client_id", "sender")
    # The client's end of a call: the caller when it came in, the callee when we dialled.
    callers = Call.objects.filter(client_id__in=client_ids, direction=CallDirection.INBOUND)
    callees = Call.objects.filter(client_id__in=client_ids, direction=CallDirection.OUTBOUND)
    numbers: dict[str, int] = {}
    for client_id, number in phones.union(
        sms_and_calls,
        inbound,
        callers.values_list("client_id", "from_number"),
        callees.values_list("client_id", "to_number"),
    ):
        e164 = getattr(number, "as_e164", None) or str(number or "")
        for variant in _number_variants(e164) - {""}:
            numbers.setdefault(variant, client_id)
    return numbers


def _client_events(client_ids: Sequence[int]) -> list[tuple[int, GatewayEvent]]:
    """The gateway events about these clients, each with its client (two queries)."""
    numbers = _client_numbers(client_ids)
    found = Q(message__client_id__in=client_ids)
    if numbers:
        by_number = Q()
        for key in _NUMBER_KEYS:
            by_number |= Q(**{f"payload__{key}__in": sorted(numbers)})
        found |= Q(kind__in=[EventKind.INBOUND_SMS, EventKind.CALL]) & by_number
    out: list[tuple[int, GatewayEvent]] = []
    for event in (
        GatewayEvent.objects.filter(found)
        .annotate(client_id=F("message__client_id"))
        .order_by("occurred_at", "id")
    ):
        payload = event.payload if isinstance(event.payload, dict) else {}
        owner = event.client_id or next(
            (numbers[str(payload[k])] for k in _NUMBER_KEYS if str(payload.get(k)) in numbers),
            None,
        )
        if owner is not None:
            out.append((owner, event))
    return out


def export_gateway_events(client_ids: Sequence[int]) -> Rows:
    return [
        {
            "client_id": client_id,
            "provider": event.provider,
            "kind": event.kind,
            "external_id": event.external_id,
            "sequence": event.sequence,
            "occurred_at": event.occurred_at,
            "payload": event.payload,
        }
        for client_id, event in _client_events(client_ids)
    ]


def anonymize_messaging(client_ids: Sequence[int]) -> None:
    """Blank the personal columns; keep the facts that reports count."""
    # Events first: they are found through the numbers blanked below.
    events = [event for _, event in _client_events(client_ids)]
    for event in events:
        payload = event.payload if isinstance(event.payload, dict) else {}
        event.payload = {k: v for k, v in payload.items() if k in EVENT_KEYS_KEPT}
    GatewayEvent.objects.bulk_update(events, ["payload"], batch_size=1000)
    Message.objects.filter(client_id__in=client_ids).update(
        recipient="", subject="", text="", reason="", products=[], link_token=None
    )
    LinkClick.objects.filter(message__client_id__in=client_ids).update(user_agent="")
    InboundSms.objects.filter(client_id__in=client_ids).update(sender="", text="")
    Call.objects.filter(client_id__in=client_ids).update(from_number="", to_number="")
    CallbackRequest.objects.filter(client_id__in=client_ids).update(reason="")


# One anonymizer for every messaging table: the events are found through numbers it blanks.
register(
    Section("messages", _("messages"), export_messages, anonymize_messaging, models=(Message,))
)
register(Section("link_clicks", _("link clicks"), export_link_clicks, models=(LinkClick,)))
register(Section("inbound_sms", _("inbound SMS"), export_inbound_sms, models=(InboundSms,)))
register(Section("calls", _("calls"), export_calls, models=(Call,)))
register(
    Section(
        "callback_requests", _("callback requests"), export_callbacks, models=(CallbackRequest,)
    )
)
register(Section("trigger_firings", _("trigger firings"), export_firings, models=(TriggerFiring,)))
register(
    Section("attributions", _("attributed purchases"), export_attributions, models=(Attribution,))
)
register(
    Section(
        "gateway_events",
        _("gateway events"),
        export_gateway_events,
        models=(GatewayEvent,),
    )
)
