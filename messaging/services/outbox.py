"""Writes of Message status outside planning and dispatch: cancellation on a withdrawn consent,
transactional messages, link clicks and e-mail unsubscribes."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from functools import reduce
from operator import or_

from django.core import signing
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from crm.models import Channel, ConsentAction, ConsentEvent, ConsentPurpose, ConsentSource
from crm.services import ConsentChange, consent_record_many
from messaging.models import PENDING_STATUSES, LinkClick, Message, MessageStatus
from offers.models import PromoCode

UNSUBSCRIBE_SALT = "messaging.unsubscribe"
PROMO_CODE_REDEEMED = "promo code redeemed"


def messages_cancel_for_consent_events(events: Sequence[ConsentEvent]) -> None:
    """crm's withdrawal hook: a withdrawn marketing consent cancels what is queued on it, in
    one statement for every channel of the batch."""
    by_channel: dict[str, list[int]] = defaultdict(list)
    for event in events:
        if event.purpose == ConsentPurpose.MARKETING:
            by_channel[event.channel].append(event.client_id)
    if not by_channel:
        return
    matches = reduce(
        or_, (Q(channel=channel, client_id__in=ids) for channel, ids in by_channel.items())
    )
    Message.objects.filter(matches, status__in=PENDING_STATUSES, is_transactional=False).update(
        status=MessageStatus.CANCELLED,
        status_reason="consent withdrawn",
        updated_at=timezone.now(),
    )


def messages_cancel_for_redeemed_codes(codes: Sequence[PromoCode]) -> None:
    """offers' redemption hook: messages still waiting to offer a code just used are cancelled,
    in one statement (dispatch checks again at send time, under a lock on the code)."""
    matches = reduce(or_, (Q(client_id=c.client_id, promo_code=c.code) for c in codes))
    Message.objects.filter(matches, status__in=PENDING_STATUSES).update(
        status=MessageStatus.CANCELLED, status_reason=PROMO_CODE_REDEEMED, updated_at=timezone.now()
    )


def transactional_message_create(
    *,
    client_id: int,
    channel: str,
    recipient: str,
    text: str,
    idempotency_key: str,
    subject: str = "",
    scheduled_for: dt.datetime | None = None,
) -> Message:
    """A service message (a STOP confirmation, say): exempt from caps, consent and quiet hours,
    sent by the next dispatch. Idempotent on its key."""
    now = timezone.now()
    message, _created = Message.objects.get_or_create(
        idempotency_key=idempotency_key,
        defaults={
            "client_id": client_id,
            "channel": channel,
            "recipient": recipient,
            "subject": subject,
            "text": text,
            "is_transactional": True,
            "scheduled_for": scheduled_for or now,
        },
    )
    return message


def link_click_record(*, token: str, user_agent: str = "") -> str | None:
    """Record a click on a personal link; the landing URL to redirect to, or None if unknown."""
    message = (
        Message.objects.select_related("run__campaign", "firing__scenario")
        .filter(link_token=token)
        .first()
    )
    if message is None:
        return None
    now = timezone.now()
    with transaction.atomic():
        LinkClick.objects.create(message=message, clicked_at=now, user_agent=user_agent[:300])
        Message.objects.filter(pk=message.pk, clicked_at__isnull=True).update(clicked_at=now)
    if message.run_id:
        return message.run.campaign.landing_url or None  # type: ignore[union-attr]
    if message.firing_id:
        return message.firing.scenario.landing_url or None  # type: ignore[union-attr]
    return None


def unsubscribe_token(message_id: int) -> str:
    return signing.dumps(message_id, salt=UNSUBSCRIBE_SALT, compress=True)


def unsubscribe_message(token: str) -> Message | None:
    try:
        message_id = signing.loads(token, salt=UNSUBSCRIBE_SALT)
    except signing.BadSignature:
        return None
    return Message.objects.select_related("client").filter(pk=message_id).first()


def email_unsubscribe(*, message: Message, evidence: str = "") -> bool:
    """Withdraw the client's e-mail marketing consent from an unsubscribe link or header.

    Returns False when it was withdrawn already (a second click changes nothing)."""
    granted = message.client.consents.filter(
        channel=Channel.EMAIL, purpose=ConsentPurpose.MARKETING, is_granted=True
    ).exists()
    if not granted:
        return False
    consent_record_many(
        changes=[
            ConsentChange(
                client_id=message.client_id,
                channel=Channel.EMAIL,
                purpose=ConsentPurpose.MARKETING,
                action=ConsentAction.WITHDRAWN,
                source=ConsentSource.EMAIL_UNSUBSCRIBE,
                wording_version="email-unsubscribe",
                occurred_at=timezone.now(),
                evidence=evidence or f"message {message.pk}",
                actor_label="unsubscribe link",
            )
        ]
    )
    return True
