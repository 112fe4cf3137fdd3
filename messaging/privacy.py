"""Messaging's personal data for ``crm.privacy``: messages, link clicks, inbound SMS, calls,
callback requests and trigger firings.

Anonymization keeps every row that results count (status, channel, offer, times, attribution)
and blanks what identifies or quotes the person: addresses, texts, reasons, promo codes in the
text, the personal link token, phone numbers of SMS and calls. Numbers on the do-not-call list
stay there: the list protects the person behind the number, whoever holds it now.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db.models import F
from django.utils.translation import gettext_lazy as _

from crm.privacy import Rows, Section, register
from messaging.models import Call, CallbackRequest, InboundSms, LinkClick, Message, TriggerFiring


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


def anonymize_messaging(client_ids: Sequence[int]) -> None:
    """Blank the personal columns; keep the facts that reports count."""
    Message.objects.filter(client_id__in=client_ids).update(
        recipient="", subject="", text="", reason="", products=[], link_token=None
    )
    LinkClick.objects.filter(message__client_id__in=client_ids).update(user_agent="")
    InboundSms.objects.filter(client_id__in=client_ids).update(sender="", text="")
    Call.objects.filter(client_id__in=client_ids).update(from_number="", to_number="")
    CallbackRequest.objects.filter(client_id__in=client_ids).update(reason="")


register(Section("messages", _("messages"), export_messages, anonymize=anonymize_messaging))
register(Section("link_clicks", _("link clicks"), export_link_clicks))
register(Section("inbound_sms", _("inbound SMS"), export_inbound_sms))
register(Section("calls", _("calls"), export_calls))
register(Section("callback_requests", _("callback requests"), export_callbacks))
register(Section("trigger_firings", _("trigger firings"), export_firings))
