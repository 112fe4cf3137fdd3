"""Reads of messaging for the admin and the client card: a campaign's audience and cost before
it is sent, a run's results by status, a client's message history.

Each read is a fixed handful of queries whatever the audience size (aggregates in the database,
never a query per client).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from crm.models import Channel, Client, Consent, ConsentPurpose
from messaging.models import (
    Campaign,
    CampaignRun,
    FiringStatus,
    Message,
    MessageStatus,
    TriggerScenario,
)
from messaging.services.campaigns import campaign_segments
from messaging.services.planning import Reason
from offers.sms import sms_info

# Why clients of a run got nothing, in a marketer's words (keys of ``CampaignRun.excluded``).
REASON_LABELS: dict[str, Any] = {
    Reason.NO_CONSENT: _("no marketing consent for the campaign's channels"),
    Reason.NO_ADDRESS: _("no phone number or e-mail for the channel"),
    Reason.NO_TEXT: _("no text for the channel"),
    Reason.NO_PRODUCT: _("no suitable product for the client (the offer's strategy found none)"),
    Reason.NOT_ELIGIBLE: _("not eligible for the offer"),
    Reason.ANONYMIZED: _("client anonymized"),
    Reason.NUMBER_BLOCKED: _("number blocked (asked not to be called, or a wrong number)"),
    Reason.NO_WINDOW: _("quiet hours: no allowed time in the next two weeks"),
    Reason.EXPIRED: _("quiet hours: the offer ends before the next allowed time"),
    Reason.MIN_GAP: _("contacted too recently (minimum gap between messages)"),
    Reason.CHANNEL_CAP: _("channel frequency cap reached"),
    Reason.TOTAL_CAP: _("cap across all channels reached"),
    Reason.OFFER_CAP: _("already received this offer (per-offer cap)"),
    Reason.ALREADY_PLANNED: _("already planned in this run"),
    Reason.NO_PROMO_CODE: _("the promo code pool ran out"),
    Reason.LOWER_PRIORITY: _("a higher-priority message was chosen"),
    Reason.PURCHASED: _("already bought"),
}

# Length of a personal tracked link in a text (``{PUBLIC_BASE_URL}/o/<16-character token>``).
_LINK_TOKEN_LENGTH = 16
_SAMPLE_SIZE = 20


def reason_label(reason: str) -> str:
    label = REASON_LABELS.get(reason)
    return str(label) if label is not None else reason


# Campaign estimate ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelEstimate:
    channel: str
    label: str
    consented: int  # audience members this channel may reach (consent and address)
    first_choice: int  # of them, those it would carry in fallback order, after the holdout


@dataclass(frozen=True)
class CampaignEstimate:
    audience: int  # clients in the audience now (not anonymized)
    reachable: int  # of them, reachable through at least one of the campaign's channels
    holdout: int  # about this many go to the control group (never sent)
    channels: list[ChannelEstimate] = field(default_factory=list)
    sms_parts: int = 0  # parts of the longest SMS of a sample render
    sms_sample: str = ""
    sms_part_price: Decimal = Decimal(0)
    sms_cost: Decimal = Decimal(0)

    @property
    def recipients(self) -> int:
        return sum(c.first_choice for c in self.channels)

    def count(self, channel: str) -> int:
        return next((c.first_choice for c in self.channels if c.channel == channel), 0)


def campaign_audience(campaign: Campaign, *, at: dt.datetime | None = None) -> QuerySet[Client]:
    """The clients a run would start from now: the campaign's segment, or its offer's audience
    (target segments minus exclusions). Consent, caps and quiet hours come later."""
    from offers.selectors import offer_audience
    from segments.selectors import segment_clients

    at = at or timezone.now()
    if campaign.segment_id is None and campaign.offer_id is not None:
        return offer_audience(offer=campaign.offer, at=at)  # type: ignore[arg-type]
    condition = Q(pk__in=[])
    for segment in campaign_segments(campaign):
        condition |= Q(pk__in=segment_clients(segment=segment, now=at).values("pk"))
    return Client.objects.filter(is_anonymized=False).filter(condition)


def _reachable(channel: str, transactional: bool) -> Q:
    address = ~Q(email="") if channel == Channel.EMAIL else ~Q(phone="")
    if transactional:
        return address
    consent = Consent.objects.filter(
        client_id=OuterRef("pk"),
        channel=channel,
        purpose=ConsentPurpose.MARKETING,
        is_granted=True,
    )
    return address & Q(Exists(consent))


def campaign_estimate(campaign: Campaign, *, at: dt.datetime | None = None) -> CampaignEstimate:
    """Who a campaign would reach and what its SMS would cost, before anything is planned.

    One aggregate query counts the audience, the members each channel may reach, and those each
    channel would carry in fallback order (reachable by it and by no earlier channel); a sample
    render of the SMS gives its parts. Caps and quiet hours are not applied: an upper bound."""
    at = at or timezone.now()
    channels = [str(c) for c in campaign.channels or [] if c in Channel.values]
    audience = campaign_audience(campaign, at=at)
    aggregates: dict[str, Any] = {"audience": Count("pk")}
    reach = {ch: _reachable(ch, campaign.is_transactional) for ch in channels}
    earlier = Q()
    any_channel = Q(pk__in=[])
    for ch in channels:
        aggregates[f"can_{ch}"] = Count("pk", filter=reach[ch])
        aggregates[f"first_{ch}"] = Count(
            "pk", filter=reach[ch] & ~earlier if earlier else reach[ch]
        )
        earlier |= reach[ch]
        any_channel |= reach[ch]
    aggregates["reachable"] = Count("pk", filter=any_channel) if channels else Count("pk")
    row = audience.aggregate(**aggregates)
    percent = Decimal(campaign.offer.holdout_percent) if campaign.offer_id else Decimal(0)  # type: ignore[union-attr]
    share = (Decimal(100) - percent) / Decimal(100)
    labels = dict(Channel.choices)
    per_channel = [
        ChannelEstimate(
            channel=ch,
            label=str(labels[ch]),
            consented=row[f"can_{ch}"],
            first_choice=int((row[f"first_{ch}"] * share).to_integral_value()),
        )
        for ch in channels
    ]
    holdout = int((row["reachable"] * percent / Decimal(100)).to_integral_value())
    estimate = CampaignEstimate(
        audience=row["audience"], reachable=row["reachable"], holdout=holdout, channels=per_channel
    )
    if Channel.SMS not in channels:
        return estimate
    parts, sample = _sms_sample(campaign, audience, at)
    price = _sms_part_price()
    sms_count = estimate.count(Channel.SMS)
    return CampaignEstimate(
        audience=estimate.audience,
        reachable=estimate.reachable,
        holdout=estimate.holdout,
        channels=per_channel,
        sms_parts=parts,
        sms_sample=sample,
        sms_part_price=price,
        sms_cost=(price * parts * sms_count).quantize(Decimal("0.01")),
    )


def _sms_part_price() -> Decimal:
    return Decimal(str(getattr(settings, "OFFERS_SMS_PART_PRICE", "2.50")))


def _with_sample_link(campaign: Campaign, text: str) -> str:
    if not campaign.landing_url:
        return text
    url = f"{settings.PUBLIC_BASE_URL.rstrip('/')}/o/{'x' * _LINK_TOKEN_LENGTH}"
    return text.replace("[link]", url) if "[link]" in text else f"{text} {url}"


def _sms_sample(campaign: Campaign, audience: QuerySet[Client], at: dt.datetime) -> tuple[int, str]:
    """Parts of the longest SMS rendered for a few audience members (with the tracked link)."""
    ids = list(audience.order_by("pk").values_list("pk", flat=True)[:_SAMPLE_SIZE])
    texts = (
        _offer_sms_texts(campaign, ids, at)
        if campaign.offer_id
        else _plain_sms_texts(campaign, ids)
    )
    if not texts:
        return 1, ""
    texts = [_with_sample_link(campaign, t) for t in texts]
    longest = max(texts, key=lambda t: sms_info(t).parts)
    return max(sms_info(longest).parts, 1), longest


def _offer_sms_texts(campaign: Campaign, ids: Sequence[int], at: dt.datetime) -> list[str]:
    from offers.engine import propose

    if not ids:
        return []
    proposals = propose(ids, offers=[campaign.offer], channel=Channel.SMS, at=at, holdout=False)
    return [p.texts["sms"].text for p in proposals if "sms" in p.texts and p.texts["sms"].text]


def _plain_sms_texts(campaign: Campaign, ids: Sequence[int]) -> list[str]:
    from offers.templating import TemplateCheckError, compile_message_template, render

    try:
        template = compile_message_template(campaign.sms_text)
    except TemplateCheckError:
        return []
    rows: list[dict[str, Any]] = [
        dict(r)
        for r in Client.objects.filter(pk__in=ids).values(
            "first_name", "middle_name", "last_name", "city", "gender"
        )
    ]
    texts = []
    for row in rows or [{}]:
        first, middle, last = (
            str(row.get(k) or "") for k in ("first_name", "middle_name", "last_name")
        )
        context = {
            "client": {
                **row,
                "full_name": " ".join(p for p in (last, first, middle) if p),
                "name": " ".join(p for p in (first, middle) if p),
            }
        }
        texts.append(render(template, context))
    return texts


# Runs -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exclusion:
    reason: str
    label: str
    count: int


def run_exclusions(run: CampaignRun) -> list[Exclusion]:
    """The run's excluded clients by reason, most frequent first, in words."""
    rows = [(str(k), int(v)) for k, v in (run.excluded or {}).items() if v]
    rows.sort(key=lambda kv: (-kv[1], kv[0]))
    return [Exclusion(reason, reason_label(reason), count) for reason, count in rows]


@dataclass(frozen=True)
class StatusCounts:
    """Messages of a run by status and channel (one grouped query)."""

    statuses: list[tuple[str, str]]  # (status, label) present, in the state machine's order
    channels: list[tuple[str, str]]  # (channel, label) present
    cells: dict[tuple[str, str], int]  # (channel, status) -> count
    by_status: dict[str, int]
    total: int

    def rows(self) -> list[tuple[str, list[int], int]]:
        """Per channel: label, counts in ``statuses`` order, total."""
        return [
            (
                label,
                [self.cells.get((ch, st), 0) for st, _label in self.statuses],
                sum(self.cells.get((ch, st), 0) for st, _label in self.statuses),
            )
            for ch, label in self.channels
        ]


def run_status_counts(run: CampaignRun | int) -> StatusCounts:
    run_id = run if isinstance(run, int) else run.pk
    cells: dict[tuple[str, str], int] = {
        (r["channel"], r["status"]): r["n"]
        for r in Message.objects.filter(run_id=run_id)
        .values("channel", "status")
        .annotate(n=Count("id"))
        .order_by()
    }
    by_status: dict[str, int] = {}
    for (_channel, status), n in cells.items():
        by_status[status] = by_status.get(status, 0) + n
    present_channels = {ch for ch, _status in cells}
    return StatusCounts(
        statuses=[(s, str(label)) for s, label in MessageStatus.choices if s in by_status],
        channels=[(c, str(label)) for c, label in Channel.choices if c in present_channels],
        cells=cells,
        by_status=by_status,
        total=sum(by_status.values()),
    )


# Clients, scenarios -----------------------------------------------------------------------------


def client_messages(client: Client | int, *, limit: int | None = 50) -> QuerySet[Message]:
    """A client's messages, newest first, with where each came from (campaign or scenario)."""
    client_id = client if isinstance(client, int) else client.pk
    queryset = (
        Message.objects.filter(client_id=client_id)
        .select_related("run__campaign", "firing__scenario", "offer")
        .order_by("-scheduled_for", "-id")
    )
    return queryset[:limit] if limit else queryset


def scenarios_with_recent_firings(
    queryset: QuerySet[TriggerScenario] | None = None,
    *,
    days: int = 7,
    now: dt.datetime | None = None,
) -> QuerySet[TriggerScenario]:
    """Scenarios with their firings of the last days counted by outcome (one query)."""
    since = (now or timezone.now()) - dt.timedelta(days=days)
    recent = Q(firings__fired_at__gte=since)
    queryset = TriggerScenario.objects.all() if queryset is None else queryset
    return queryset.annotate(
        fired_recent=Count("firings", filter=recent),
        planned_recent=Count("firings", filter=recent & Q(firings__status=FiringStatus.PLANNED)),
        suppressed_recent=Count(
            "firings", filter=recent & Q(firings__status=FiringStatus.SUPPRESSED)
        ),
        stopped_recent=Count("firings", filter=recent & Q(firings__status=FiringStatus.STOPPED)),
    )
