"""Reads of offers: next best offers for a client (the card and the API), reach and cost
estimates, promo pool usage."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from crm.models import Client
from offers import pricing
from offers.engine import Proposal, live_offers, propose
from offers.models import Offer, PromoPool
from segments.selectors import segment_clients


def next_best_offers(
    *, client: Client | int, at: dt.datetime | None = None, limit: int | None = None
) -> list[Proposal]:
    """Every live offer the client is eligible for, best first (priority, then expected
    value), each with its reason. A client in an offer's control group is not shown it, so
    that the operator does not offer it by phone either."""
    client_id = client if isinstance(client, int) else int(client.pk)
    proposals = [p for p in propose([client_id], at=at) if not p.is_control]
    return proposals[:limit] if limit else proposals


def offer_audience(*, offer: Offer, at: dt.datetime | None = None) -> QuerySet[Client]:
    """The clients an offer targets: in any target segment (all clients when none), in no
    exclusion segment. Strategy and holdout are applied by the engine, not here."""
    at = at or timezone.now()
    queryset = Client.objects.filter(is_anonymized=False)
    targets = list(offer.segments.all())
    if targets:
        condition = Q()
        for segment in targets:
            condition |= Q(pk__in=segment_clients(segment=segment, now=at).values("pk"))
        queryset = queryset.filter(condition)
    for segment in offer.exclude_segments.all():
        queryset = queryset.exclude(pk__in=segment_clients(segment=segment, now=at).values("pk"))
    return queryset


def random_member(*, offer: Offer, at: dt.datetime | None = None) -> int | None:
    """A random client of the offer's audience (for the preview), without ORDER BY random()
    over the whole table: a random id range probe, then the first member above it."""
    audience = offer_audience(offer=offer, at=at)
    bounds = Client.objects.order_by("pk").values_list("pk", flat=True)
    low, high = bounds.first(), bounds.last()
    if low is None or high is None:
        return None
    probe = random.randint(low, high)  # noqa: S311 - not security
    found = audience.filter(pk__gte=probe).order_by("pk").values_list("pk", flat=True).first()
    if found is None:
        found = audience.order_by("pk").values_list("pk", flat=True).first()
    return found


@dataclass(frozen=True)
class CampaignEstimate:
    reach: int  # clients in the audience
    holdout: int  # of which the control group, about
    recipients: int  # about reach minus holdout
    sms_parts: int  # parts of the previewed SMS
    sms_part_price: Decimal
    sms_cost: Decimal  # parts x recipients x price


def offer_estimate(
    *, offer: Offer, sms_parts: int, at: dt.datetime | None = None
) -> CampaignEstimate:
    """Reach (one COUNT) and the cost of an SMS campaign: parts x recipients x price per part."""
    reach = offer_audience(offer=offer, at=at).count()
    holdout = round(reach * float(offer.holdout_percent) / 100)
    recipients = reach - holdout
    price = pricing.sms_part_price()
    return CampaignEstimate(
        reach=reach,
        holdout=holdout,
        recipients=recipients,
        sms_parts=sms_parts,
        sms_part_price=price,
        sms_cost=(price * sms_parts * recipients).quantize(pricing.CENT),
    )


def promo_pools_with_usage() -> QuerySet[PromoPool]:
    return PromoPool.objects.annotate(
        total=Count("codes"),
        assigned=Count("codes", filter=Q(codes__client__isnull=False)),
        redeemed=Count("codes", filter=Q(codes__redeemed_at__isnull=False)),
    )


def live_offer_list(*, at: dt.datetime | None = None) -> QuerySet[Offer]:
    return live_offers(at=at or timezone.now()).prefetch_related("segments", "variants")


def proposal_as_dict(proposal: Proposal) -> dict[str, Any]:
    """Plain data for the card, the API and the admin preview."""
    return {
        "offer_id": proposal.offer_id,
        "offer": proposal.offer_name,
        "priority": proposal.priority,
        "strategy": proposal.strategy,
        "variant": proposal.variant_name,
        "is_control": proposal.is_control,
        "channels": proposal.channels,
        "valid_from": proposal.valid_from,
        "valid_until": proposal.valid_until,
        "products": proposal.products,
        "reason": proposal.reason,
        "facts": proposal.facts,
        "score": proposal.score,
        "expected_value": proposal.expected_value,
        "promo_pool_id": proposal.promo_pool_id,
        "texts": {
            name: {
                "text": t.text,
                "subject": t.subject,
                "encoding": t.sms.encoding if t.sms else None,
                "parts": t.sms.parts if t.sms else None,
                "characters": t.sms.characters if t.sms else None,
                "transliterated": t.transliterated,
            }
            for name, t in proposal.texts.items()
        },
    }
