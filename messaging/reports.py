"""Results of campaigns, offers, trigger scenarios and A/B variants (read-only selectors).

Every figure comes from grouped aggregate queries over the outbox and the attributions: a report
costs the same handful of queries for 5 messages or 200,000. Conversions are counted per message
(a message with at least one credited purchase), the treated group being every message planned
for a non-holdout client (intention to treat: a failed send stays in the denominator), the
control group every holdout record. ``two_proportion_test`` then says, in plain words, whether
the campaign beat its control group.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import (
    BooleanField,
    Case,
    Count,
    DateTimeField,
    Exists,
    ExpressionWrapper,
    OuterRef,
    Q,
    Sum,
    Value,
    When,
)
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.text import capfirst
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from crm.models import Channel, ConsentAction, ConsentEvent, ConsentPurpose, ConsentSource
from messaging.models import (
    ATTRIBUTION_WINDOW_DAYS,
    Attribution,
    AttributionScope,
    CallbackRequest,
    CallbackSource,
    Campaign,
    CampaignRun,
    Message,
    MessageStatus,
    OfferAttributionRule,
    TriggerScenario,
)
from offers.models import Offer, OfferVariant

DELIVERED_STATUSES = [MessageStatus.DELIVERED, MessageStatus.ANSWERED]
FAILED_STATUSES = [
    MessageStatus.FAILED,
    MessageStatus.UNDELIVERED,
    MessageStatus.BUSY,
    MessageStatus.NO_ANSWER,
]
# Withdrawals that a client made (not an import or an anonymization) count as opt-outs.
OPT_OUT_SOURCES = [
    ConsentSource.INBOUND_SMS,
    ConsentSource.IVR,
    ConsentSource.EMAIL_UNSUBSCRIBE,
    ConsentSource.WEB_FORM,
    ConsentSource.CALL_CENTER,
    ConsentSource.STORE,
    ConsentSource.API,
    ConsentSource.ADMIN,
]

# The guard before any verdict: per group at least this many messages, and this many expected
# conversions and non-conversions (the normal approximation's rule of thumb).
MIN_GROUP_SIZE = 30
MIN_EXPECTED = 5
Z_95 = 1.959963984540054


# Statistics -------------------------------------------------------------------------------------


class Verdict:
    BETTER = "better"
    WORSE = "worse"
    NO_DIFFERENCE = "no_difference"
    TOO_FEW = "too_few"


@dataclass(frozen=True)
class Comparison:
    """A against B: difference of conversion rates with its 95% interval and a verdict."""

    conv_a: int
    n_a: int
    conv_b: int
    n_b: int
    rate_a: float
    rate_b: float
    difference: float  # rate_a - rate_b, as a fraction
    ci_low: float
    ci_high: float
    z: float | None
    p_value: float | None
    verdict: str
    text: str

    @property
    def difference_pp(self) -> float:
        return self.difference * 100

    @property
    def is_significant(self) -> bool:
        return self.verdict in (Verdict.BETTER, Verdict.WORSE)


def _normal_sf(z: float) -> float:
    """P(Z > z) for the standard normal."""
    return 0.5 * math.erfc(z / math.sqrt(2))


def two_proportion_test(
    conv_a: int,
    n_a: int,
    conv_b: int,
    n_b: int,
    *,
    subject: str | None = None,
    baseline: str | None = None,
    alpha: float = 0.05,
) -> Comparison:
    """Two-proportion z-test of A (treated, a variant) against B (control, another variant).

    The z statistic uses the pooled proportion (the null hypothesis: equal rates); the 95%
    interval of the difference uses the unpooled standard error. Below the minimum sample no
    verdict is given, only "too little data".
    """
    subject = subject or _("the campaign")
    baseline = baseline or _("its control group")
    rate_a = conv_a / n_a if n_a else 0.0
    rate_b = conv_b / n_b if n_b else 0.0
    diff = rate_a - rate_b
    se = math.sqrt(rate_a * (1 - rate_a) / n_a + rate_b * (1 - rate_b) / n_b) if n_a and n_b else 0
    low, high = diff - Z_95 * se, diff + Z_95 * se
    pooled = (conv_a + conv_b) / (n_a + n_b) if n_a + n_b else 0.0
    enough = (
        min(n_a, n_b) >= MIN_GROUP_SIZE
        and min(n_a, n_b) * pooled >= MIN_EXPECTED
        and min(n_a, n_b) * (1 - pooled) >= MIN_EXPECTED
    )
    z = p_value = None
    if enough:
        se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
        z = diff / se_pooled
        p_value = min(1.0, 2 * _normal_sf(abs(z)))
    if not enough:
        verdict = Verdict.TOO_FEW
    elif p_value is not None and p_value < alpha:
        verdict = Verdict.BETTER if diff > 0 else Verdict.WORSE
    else:
        verdict = Verdict.NO_DIFFERENCE
    figures = {
        "subject": subject,
        "baseline": baseline,
        "diff": _pp(diff),
        "low": _pp(low),
        "high": _pp(high),
        "p": _p(p_value),
        "n": MIN_GROUP_SIZE,
        "c": MIN_EXPECTED,
    }
    if verdict == Verdict.BETTER:
        text = _("%(subject)s beat %(baseline)s: %(diff)s pp (95%% CI %(low)s…%(high)s), %(p)s")
    elif verdict == Verdict.WORSE:
        text = _(
            "%(subject)s did worse than %(baseline)s: %(diff)s pp (95%% CI %(low)s…%(high)s), %(p)s"
        )
    elif verdict == Verdict.NO_DIFFERENCE:
        text = _(
            "%(subject)s vs %(baseline)s: no significant difference yet, need more data "
            "(%(diff)s pp, 95%% CI %(low)s…%(high)s, %(p)s)"
        )
    else:
        text = _(
            "%(subject)s vs %(baseline)s: too little data to judge yet (each group needs at "
            "least %(n)s messages and %(c)s conversions)"
        )
    return Comparison(
        conv_a=conv_a,
        n_a=n_a,
        conv_b=conv_b,
        n_b=n_b,
        rate_a=rate_a,
        rate_b=rate_b,
        difference=diff,
        ci_low=low,
        ci_high=high,
        z=z,
        p_value=p_value,
        verdict=verdict,
        text=capfirst(text % figures),
    )


def _pp(fraction: float) -> str:
    value = round(fraction * 100, 1)
    if value == 0:
        return "0.0"
    return f"{value:+.1f}".replace("-", "−")


def _p(p_value: float | None) -> str:
    if p_value is None:
        return "p=—"
    if p_value < 0.001:
        return "p<0.001"
    return f"p={p_value:.3f}"


# Figures ----------------------------------------------------------------------------------------


@dataclass
class Figures:
    """One group of messages: the treated messages of a campaign, a variant, or a control group."""

    messages: int = 0
    recipients: int = 0
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    answered: int = 0
    pressed_one: int = 0
    opt_outs: int = 0
    clicks: int = 0
    conversions: int = 0
    purchases: int = 0
    revenue: Decimal = Decimal("0")
    margin: Decimal = Decimal("0")
    discount: Decimal = Decimal("0")

    def add(self, other: Figures) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @property
    def conversion_rate(self) -> float:
        return self.conversions / self.messages if self.messages else 0.0

    @property
    def conversion_percent(self) -> float:
        return round(self.conversion_rate * 100, 2)

    @property
    def revenue_per_message(self) -> Decimal:
        base = self.sent or self.messages
        return (self.revenue / base).quantize(Decimal("0.01")) if base else Decimal("0")


@dataclass
class Group:
    """A row of a report: the treated figures, the matching control, and the comparison."""

    key: Any
    label: str
    treated: Figures
    control: Figures
    uplift: Comparison
    against_first: Comparison | None = None  # variants: B against A


@dataclass
class Report:
    title: str
    window_days: int
    scope: str
    total: Group
    variants: list[Group] = field(default_factory=list)
    timeline: list[tuple[dt.date, int, int]] = field(default_factory=list)

    @property
    def funnel(self) -> list[tuple[str, int]]:
        t = self.total.treated
        return [
            (_("planned"), t.messages),
            (_("sent"), t.sent),
            (_("delivered"), t.delivered),
            (_("clicked"), t.clicks),
            (_("converted"), t.conversions),
        ]


@dataclass
class _Grouped:
    """Figures per (key, is control), and the treated sends and conversions per (key, day)."""

    figures: dict[tuple[Any, bool], Figures]
    sends: Counter[tuple[Any, dt.date]]
    conversions: Counter[tuple[Any, dt.date]]

    def timeline(self, keys: Iterable[Any] | None = None, *, days: int | None = None) -> Timeline:
        wanted = None if keys is None else set(keys)
        sends: Counter[dt.date] = Counter()
        conversions: Counter[dt.date] = Counter()
        for (k, day), n in self.sends.items():
            if wanted is None or k in wanted:
                sends[day] += n
        for (k, day), n in self.conversions.items():
            if wanted is None or k in wanted:
                conversions[day] += n
        return _days(sends, conversions, days=days)


Timeline = list[tuple[dt.date, int, int]]


def _aggregate(where: Q, key: str | None, *, window_days: int, one_run: bool = False) -> _Grouped:
    """A handful of grouped queries, whatever the number of messages:

    1. messages per (key, control, day sent): the counters;
    2. distinct clients per (key, control), unless the messages are one run's (a run writes one
       message per client, so recipients = messages);
    3. sent messages followed by an opt-out on their channel within the window;
    4. attributions per (key, control, day bought): conversions and money.
    """
    window = dt.timedelta(days=window_days)
    control = Case(
        When(status=MessageStatus.CONTROL, then=Value(True)),
        default=Value(False),
        output_field=BooleanField(),
    )
    group = [key] if key else []
    messages = Message.objects.filter(where).annotate(ctl=control).order_by()
    pressed = Exists(
        CallbackRequest.objects.filter(message=OuterRef("pk"), source=CallbackSource.IVR)
    )
    rows = (
        messages.annotate(day=TruncDate("sent_at"))
        .values(*group, "ctl", "day")
        .annotate(
            messages=Count("id"),
            sent=Count("id", filter=Q(sent_at__isnull=False)),
            delivered=Count("id", filter=Q(status__in=DELIVERED_STATUSES)),
            failed=Count("id", filter=Q(status__in=FAILED_STATUSES)),
            answered=Count("id", filter=Q(channel=Channel.CALL, status=MessageStatus.ANSWERED)),
            # Only calls can press 1: the callback lookup runs for them alone.
            pressed_one=Count(
                "id", filter=Q(channel=Channel.CALL) & (Q(dtmf__contains="1") | Q(pressed))
            ),
            clicks=Count("id", filter=Q(clicked_at__isnull=False)),
        )
    )
    out = _Grouped({}, Counter(), Counter())
    counters = ("messages", "sent", "delivered", "failed", "answered", "pressed_one", "clicks")
    for row in rows:
        k = row[key] if key else None
        figures = out.figures.setdefault((k, bool(row["ctl"])), Figures())
        for name in counters:
            setattr(figures, name, getattr(figures, name) + row[name])
        if not row["ctl"] and row["day"] is not None:
            out.sends[(k, row["day"])] += row["sent"]
    if one_run:
        for figures in out.figures.values():
            figures.recipients = figures.messages
    else:
        for row in messages.values(*group, "ctl").annotate(n=Count("client_id", distinct=True)):
            k = row[key] if key else None
            out.figures[(k, bool(row["ctl"]))].recipients = row["n"]

    opted_out = Exists(
        ConsentEvent.objects.filter(
            client=OuterRef("client_id"),
            channel=OuterRef("channel"),
            purpose=ConsentPurpose.MARKETING,
            action=ConsentAction.WITHDRAWN,
            source__in=OPT_OUT_SOURCES,
            occurred_at__gte=OuterRef("sent_at"),
            occurred_at__lt=ExpressionWrapper(
                OuterRef("sent_at") + window, output_field=DateTimeField()
            ),
        )
    )
    for row in (
        messages.filter(sent_at__isnull=False)
        .filter(opted_out)
        .values(*group, "ctl")
        .annotate(n=Count("id"))
    ):
        k = row[key] if key else None
        out.figures[(k, bool(row["ctl"]))].opt_outs = row["n"]

    attr_key = _attribution_field(key) if key else None
    attributed = (
        Attribution.objects.filter(_prefixed(where))
        .annotate(day=TruncDate("purchased_at"))
        .values(*([attr_key] if attr_key else []), "is_control", "day")
        .order_by()
        .annotate(
            purchases=Count("id"),
            revenue=Sum("revenue"),
            margin=Sum("margin"),
            discount=Sum("discount"),
        )
    )
    for row in attributed:
        k = row[attr_key] if attr_key else None
        figures = out.figures.setdefault((k, bool(row["is_control"])), Figures())
        figures.purchases += row["purchases"]
        figures.revenue += _money(row["revenue"])
        figures.margin += _money(row["margin"])
        figures.discount += _money(row["discount"])
        if not row["is_control"]:
            # Over time, each credited purchase on its day.
            out.conversions[(k, row["day"])] += row["purchases"]
    _converted_messages(where, key, attr_key, out)
    return out


def _converted_messages(where: Q, key: str | None, attr_key: str | None, out: _Grouped) -> None:
    """Conversions = messages with a credited purchase (distinct over all days)."""
    rows = (
        Attribution.objects.filter(_prefixed(where))
        .values(*([attr_key] if attr_key else []), "is_control")
        .order_by()
        .annotate(n=Count("message_id", distinct=True))
    )
    for row in rows:
        k = row[attr_key] if attr_key else None
        out.figures.setdefault((k, bool(row["is_control"])), Figures()).conversions = row["n"]


# Attribution copies these message columns; anything else is read through the message.
_COPIED = {"run", "firing", "offer", "variant", "client"}


def _attribution_field(name: str) -> str:
    return name if name.split("__")[0] in _COPIED else f"message__{name}"


def _prefixed(where: Q) -> Q:
    """The same filter seen from Attribution."""
    out = Q()
    out.connector, out.negated = where.connector, where.negated
    for child in where.children:
        if isinstance(child, Q):
            out.children.append(_prefixed(child))
        else:
            name, value = child  # type: ignore[misc]
            out.children.append((_attribution_field(name), value))
    return out


def _money(value: Any) -> Decimal:
    if value is None:
        return Decimal("0")
    return Decimal(str(value)).quantize(Decimal("0.01"))


def _days(sends: Counter[dt.date], conversions: Counter[dt.date], *, days: int | None) -> Timeline:
    """Every day from the first to the last, so the chart's x axis is time."""
    all_days = sorted(d for d in set(sends) | set(conversions) if d is not None)
    if not all_days:
        return []
    first, last = all_days[0], all_days[-1]
    if days is not None:
        first = max(first, last - dt.timedelta(days=days - 1))
    out = []
    day = first
    while day <= last:
        out.append((day, sends.get(day, 0), conversions.get(day, 0)))
        day += dt.timedelta(days=1)
    return out


def _group(
    key: Any, label: str, treated: Figures, control: Figures, *, subject: str | None = None
) -> Group:
    uplift = two_proportion_test(
        treated.conversions,
        treated.messages,
        control.conversions,
        control.messages,
        subject=subject,
    )
    return Group(key, label, treated, control, uplift)


def _rule(offer_id: int | None) -> tuple[int, str]:
    if offer_id is None:
        return ATTRIBUTION_WINDOW_DAYS, str(AttributionScope.ANY.label)
    rule = OfferAttributionRule.objects.filter(offer_id=offer_id).first()
    if rule is None:
        return ATTRIBUTION_WINDOW_DAYS, str(AttributionScope.OFFER.label)
    return rule.window_days, str(rule.get_scope_display())


@contextmanager
def _analytics() -> Iterator[None]:
    """PostgreSQL's JIT spends seconds compiling these sub-second aggregates (its cost
    threshold counts every correlated subquery probe): off, for this transaction only."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL jit = off")
        yield


def _report(
    title: str, where: Q, offer_id: int | None, *, subject: str, one_run: bool = False
) -> Report:
    window_days, scope = _rule(offer_id)
    with _analytics():
        grouped = _aggregate(where, "variant", window_days=window_days, one_run=one_run)
    by_variant = grouped.figures
    treated, control = Figures(), Figures()
    for (_vid, ctl), figures in by_variant.items():
        (control if ctl else treated).add(figures)
    total = _group(None, title, treated, control, subject=subject)

    variant_ids = sorted(k for k, ctl in by_variant if not ctl and k is not None)
    names = dict(OfferVariant.objects.filter(pk__in=variant_ids).values_list("pk", "name"))
    variants: list[Group] = []
    if variant_ids:
        keys: list[int | None] = [*variant_ids]
        if (None, False) in by_variant:
            keys.append(None)
        for vid in keys:
            label = (
                _("variant %(name)s") % {"name": names.get(vid, vid)}
                if vid is not None
                else _("no variant")
            )
            variants.append(
                _group(vid, label, by_variant[(vid, False)], control, subject=capfirst(label))
            )
        first = variants[0]
        for other in variants[1:]:
            other.against_first = two_proportion_test(
                other.treated.conversions,
                other.treated.messages,
                first.treated.conversions,
                first.treated.messages,
                subject=capfirst(other.label),
                baseline=first.label,
            )
    return Report(
        title=title,
        window_days=window_days,
        scope=scope,
        total=total,
        variants=variants,
        timeline=grouped.timeline(),
    )


# Selectors --------------------------------------------------------------------------------------


def campaign_report(target: Campaign | CampaignRun) -> Report:
    """One run of a campaign, or all its runs together."""
    if isinstance(target, CampaignRun):
        return _report(
            str(target),
            Q(run=target.pk),
            target.campaign.offer_id,
            subject=_("the campaign"),
            one_run=True,
        )
    return _report(
        target.name, Q(run__campaign=target.pk), target.offer_id, subject=_("the campaign")
    )


def offer_report(offer: Offer) -> Report:
    """Every message of the offer: its campaigns and trigger scenarios."""
    return _report(offer.name, Q(offer=offer.pk), offer.pk, subject=_("the offer"))


def trigger_report(scenario: TriggerScenario) -> Report:
    return _report(
        scenario.name,
        Q(firing__scenario=scenario.pk),
        scenario.offer_id,
        subject=_("the trigger scenario"),
    )


def variant_report(target: Offer | Campaign | CampaignRun) -> list[Group]:
    """A/B variants side by side: each against the control group and against the first."""
    if isinstance(target, Offer):
        return offer_report(target).variants
    return campaign_report(target).variants


@dataclass
class Overview:
    """The dashboard: every campaign, trigger scenario and offer with messages in the period."""

    since: dt.datetime
    campaigns: list[Group]
    triggers: list[Group]
    offers: list[Group]
    timeline: Timeline


def dashboard(*, days: int = 90, now: dt.datetime | None = None) -> Overview:
    """The period's campaigns, triggers and offers (the default 7-day window for opt-outs)."""
    now = now or timezone.now()
    since = now - dt.timedelta(days=days)
    recent = Q(scheduled_for__gte=since)

    def groups(
        where: Q, key: str, model: type[Campaign | TriggerScenario | Offer], subject: str
    ) -> tuple[list[Group], _Grouped]:
        grouped = _aggregate(where, key, window_days=ATTRIBUTION_WINDOW_DAYS)
        keys = sorted({k for k, _ctl in grouped.figures if k is not None}, reverse=True)
        label = dict(model.objects.filter(pk__in=keys).values_list("pk", "name"))
        rows = [
            _group(
                k,
                label.get(k, str(k)),
                grouped.figures.get((k, False), Figures()),
                grouped.figures.get((k, True), Figures()),
                subject=subject,
            )
            for k in keys
        ]
        return rows, grouped

    with _analytics():
        campaigns, by_campaign = groups(
            recent & Q(run__isnull=False), "run__campaign", Campaign, _("the campaign")
        )
        triggers, by_trigger = groups(
            recent & Q(firing__isnull=False),
            "firing__scenario",
            TriggerScenario,
            _("the trigger scenario"),
        )
        offers, _by_offer = groups(recent & Q(offer__isnull=False), "offer", Offer, _("the offer"))
    # Over time: campaigns and triggers together (a message has one origin).
    sends = Counter[dt.date]()
    conversions = Counter[dt.date]()
    for grouped in (by_campaign, by_trigger):
        for day, s, c in grouped.timeline():
            sends[day] += s
            conversions[day] += c
    return Overview(
        since=since,
        campaigns=campaigns,
        triggers=triggers,
        offers=offers,
        timeline=_days(sends, conversions, days=days),
    )


# Tables for export and for the pages --------------------------------------------------------------

COLUMNS: Sequence[tuple[str, Any]] = [
    ("messages", gettext_lazy("messages")),
    ("recipients", gettext_lazy("recipients")),
    ("sent", gettext_lazy("sent")),
    ("delivered", gettext_lazy("delivered")),
    ("failed", gettext_lazy("failed")),
    ("answered", gettext_lazy("answered calls")),
    ("pressed_one", gettext_lazy("pressed 1")),
    ("opt_outs", gettext_lazy("opt-outs")),
    ("clicks", gettext_lazy("link clicks")),
    ("conversions", gettext_lazy("conversions")),
    ("purchases", gettext_lazy("purchases")),
    ("conversion_rate", gettext_lazy("conversion rate, %")),
    ("revenue", gettext_lazy("revenue")),
    ("margin", gettext_lazy("margin")),
    ("discount", gettext_lazy("discount cost")),
    ("revenue_per_message", gettext_lazy("revenue per message")),
]


def figures_row(figures: Figures) -> list[Any]:
    row: list[Any] = []
    for name, _label in COLUMNS:
        value = getattr(figures, name)
        row.append(round(value * 100, 2) if name == "conversion_rate" else value)
    return row


def comparison_row(comparison: Comparison | None) -> list[Any]:
    if comparison is None:
        return ["", "", "", "", ""]
    return [
        round(comparison.difference_pp, 2),
        round(comparison.ci_low * 100, 2),
        round(comparison.ci_high * 100, 2),
        round(comparison.p_value, 4) if comparison.p_value is not None else "",
        comparison.text,
    ]


def table_header(first: str) -> list[str]:
    return (
        [first, str(_("group"))]
        + [str(label) for _name, label in COLUMNS]
        + [
            str(_("uplift, pp")),
            str(_("95% CI from, pp")),
            str(_("95% CI to, pp")),
            str(_("p-value")),
            str(_("verdict")),
        ]
    )


def groups_table(groups: Iterable[Group], first: str) -> list[list[Any]]:
    """One header and two lines per group (treated, control): what CSV and XLSX export."""
    rows: list[list[Any]] = [table_header(first)]
    for g in groups:
        rows.append(
            [g.label, str(_("treated"))] + figures_row(g.treated) + comparison_row(g.uplift)
        )
        rows.append(
            [g.label, str(_("control group"))] + figures_row(g.control) + comparison_row(None)
        )
    return rows


def report_tables(report: Report) -> dict[str, list[list[Any]]]:
    """The sheets of a report: summary (with the variants), and days."""
    summary = groups_table([report.total], str(_("report")))
    for v in report.variants:
        summary.append(
            [v.label, str(_("treated"))] + figures_row(v.treated) + comparison_row(v.uplift)
        )
        if v.against_first is not None:
            summary.append(
                [v.label, str(_("against the first variant"))]
                + [""] * len(COLUMNS)
                + comparison_row(v.against_first)
            )
    days: list[list[Any]] = [[str(_("day")), str(_("sent")), str(_("conversions"))]]
    days += [[d.isoformat(), s, c] for d, s, c in report.timeline]
    return {str(_("summary")): summary, str(_("by day")): days}


def overview_tables(overview: Overview) -> dict[str, list[list[Any]]]:
    days: list[list[Any]] = [[str(_("day")), str(_("sent")), str(_("conversions"))]]
    days += [[d.isoformat(), s, c] for d, s, c in overview.timeline]
    return {
        str(_("campaigns")): groups_table(overview.campaigns, str(_("campaign"))),
        str(_("triggers")): groups_table(overview.triggers, str(_("trigger scenario"))),
        str(_("offers")): groups_table(overview.offers, str(_("offer"))),
        str(_("by day")): days,
    }
