"""Trigger scenarios: find whom each active scenario fires for, then plan their messages.

One evaluation works in three set-based passes, a few statements per scenario and per batch of
clients, never one per client:

1. A purchase stops follow-up chains: pending messages of firings the client has bought since
   are cancelled and the firings marked stopped.
2. Every scenario's rule (or, for replenishment and cross-sell with an offer of that strategy,
   the offer engine) proposes firings: (scenario, client, occasion, step) with the time the
   message may go at the earliest. Due follow-ups of open chains are proposed too.
3. Per batch of clients, in one transaction holding the clients' row locks (the same locks every
   planner takes, so a campaign racing a trigger waits its turn and caps hold): the firings that
   do not exist yet are inserted with ``INSERT ... ON CONFLICT DO NOTHING`` on the unique
   (scenario, client, occasion, step), only the highest-priority one per client plans a message
   (the rest, and any lower than a trigger message the client got within
   ``MESSAGING_TRIGGER_WINDOW_HOURS``, are suppressed as ``lower_priority``), and the messages
   go through :func:`plan_batch`; a firing whose message was excluded keeps the reason. A
   lower-priority trigger message of the window that is still only planned gives way: it is
   cancelled, and its firing suppressed, once the higher one's message is planned.

Occasions name what fired: ``cart:<event>``, ``view:<event>``, ``price:<event>:<price>``,
``purchase:<purchase>``, ``birthday:<year>``, ``winback:<last purchase>``. An occasion fires
once its due time (occasion time + ``delay_hours``) has come; occasions overdue by more than
``MESSAGING_TRIGGER_CATCH_UP_HOURS`` (cross-sell, replenishment) are let go, so switching a
scenario on does not message every purchase of the past.

Price drop: the catalog keeps no price history, so the price the client saw is the one the
``cart_add`` event recorded in its payload (``{"price": "1290.00"}``, sent by the shop with
the event); a cart whose product now costs less fires, once per new price.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import (
    CharField,
    Count,
    Exists,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Cast, Concat
from django.utils import formats, timezone
from django.utils.translation import gettext as _

from crm.db.raw import InIds, chunks, db_datetime
from crm.models import Channel, Client, Event, EventType, Purchase, PurchaseItem
from messaging.models import (
    COUNTED_STATUSES,
    PENDING_STATUSES,
    FiringStatus,
    Message,
    MessageStatus,
    TimeTarget,
    TriggerFiring,
    TriggerKind,
    TriggerScenario,
)
from messaging.services.planning import Candidate, Origin, Reason, plan_batch
from messaging.services.policy import Policy, active_policy, zone
from messaging.services.texts import json_safe, plain_templates, proposal_candidate, render_texts

# The offer strategy that, on an offer of a scenario of this kind, decides who fires.
ENGINE_KINDS = {TriggerKind.REPLENISHMENT: "replenish", TriggerKind.CROSS_SELL: "cross_sell"}
# Behavioural scenarios go out as soon as the quiet hours allow; the calendar ones in the
# client's preferred part of the day.
ASAP_KINDS = {TriggerKind.ABANDONED_CART, TriggerKind.BROWSE_ABANDONMENT, TriggerKind.PRICE_DROP}
STOPPED_BY_PURCHASE = "purchased"
_INSERT_ROWS = 1000  # rows per INSERT statement (parameter limits)


@dataclass
class ScenarioCounts:
    fired: int = 0
    planned: int = 0
    suppressed: Counter[str] = field(default_factory=Counter)
    stopped: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "fired": self.fired,
            "planned": self.planned,
            "suppressed": dict(self.suppressed),
            "stopped": self.stopped,
        }


@dataclass
class TriggerResult:
    scenarios: dict[int, ScenarioCounts] = field(default_factory=dict)
    cancelled: int = 0  # pending messages cancelled because the client bought
    outranked: int = 0  # planned messages cancelled for a higher-priority scenario's

    def counts(self, scenario: TriggerScenario | int) -> ScenarioCounts:
        key = scenario if isinstance(scenario, int) else scenario.pk
        return self.scenarios.setdefault(key, ScenarioCounts())

    @property
    def fired(self) -> int:
        return sum(c.fired for c in self.scenarios.values())

    @property
    def planned(self) -> int:
        return sum(c.planned for c in self.scenarios.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "cancelled": self.cancelled,
            "outranked": self.outranked,
            "scenarios": {pk: c.as_dict() for pk, c in self.scenarios.items()},
        }


@dataclass
class Proposed:
    """A firing a scenario wants: what fired it, and the earliest its message may go."""

    scenario_id: int
    client_id: int
    occasion: str
    step: int
    due: dt.datetime
    product_id: int | None = None
    fact: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Run:
    now: dt.datetime
    batch_size: int
    catch_up: dt.timedelta
    result: TriggerResult
    scenarios: dict[int, TriggerScenario]
    only: list[int] | None = None  # the scenarios asked for, if the caller named them
    catalog: Any = None
    # Engine proposals found while deciding who fires (replenishment, cross-sell): reused to plan.
    proposals: dict[int, dict[int, Any]] = field(default_factory=dict)

    def load_catalog(self) -> Any:
        if self.catalog is None:
            from offers.catalog import Catalog

            self.catalog = Catalog.load(at=self.now)
        return self.catalog


def triggers_evaluate(
    *,
    now: dt.datetime | None = None,
    scenarios: Iterable[TriggerScenario | int] | None = None,
    batch_size: int | None = None,
) -> TriggerResult:
    """Evaluate the active scenarios (or the given ones) and plan their messages."""
    now = now or timezone.now()
    queryset = TriggerScenario.objects.filter(is_active=True).select_related("offer")
    only = None
    if scenarios is not None:
        only = [s if isinstance(s, int) else s.pk for s in scenarios]
        queryset = queryset.filter(pk__in=only)
    live = [s for s in queryset.order_by("-priority", "name") if _usable(s, now)]
    run = _Run(
        now=now,
        batch_size=batch_size or settings.MESSAGING_PLAN_BATCH,
        catch_up=dt.timedelta(hours=settings.MESSAGING_TRIGGER_CATCH_UP_HOURS),
        result=TriggerResult(),
        scenarios={s.pk: s for s in live},
        only=only,
    )
    for scenario in live:
        run.result.counts(scenario)
    _stop_chains(run)
    proposed: list[Proposed] = []
    for scenario in live:
        proposed.extend(_FINDERS[TriggerKind(scenario.kind)](run, scenario))
        if scenario.followup_days and scenario.max_followups:
            proposed.extend(_followups(run, scenario))
    if proposed:
        _plan(run, proposed, active_policy())
    return run.result


def _usable(scenario: TriggerScenario, now: dt.datetime) -> bool:
    channels = [c for c in scenario.channels or [] if c in Channel.values]
    if not channels:
        return False
    offer = scenario.offer
    if offer is None:
        return True
    return offer.status == "active" and offer.starts_at <= now < offer.ends_at


def _engine_driven(scenario: TriggerScenario) -> bool:
    strategy = ENGINE_KINDS.get(TriggerKind(scenario.kind))
    return (
        strategy is not None
        and scenario.offer is not None
        and (scenario.offer.strategy == strategy)
    )


# 1. A purchase stops the chain --------------------------------------------------------------------


def _bought_since(field_name: str) -> Exists:
    return Exists(
        Purchase.objects.filter(
            client_id=OuterRef("client_id"), purchased_at__gt=OuterRef(field_name)
        )
    )


def _stop_chains(run: _Run) -> None:
    """Cancel pending trigger messages of clients who bought after the firing, and mark those
    firings stopped (three statements) — also for scenarios switched off since. Chains due for a
    follow-up are stopped in :func:`_followups`."""
    queryset = TriggerFiring.objects.filter(
        status=FiringStatus.PLANNED, messages__status__in=PENDING_STATUSES
    )
    if run.only is not None:
        queryset = queryset.filter(scenario_id__in=run.only)
    firings = list(
        queryset.filter(_bought_since("fired_at")).values_list("id", "scenario_id").distinct()
    )
    if not firings:
        return
    ids = [pk for pk, _s in firings]
    run.result.cancelled += Message.objects.filter(
        InIds("firing_id", ids), status__in=PENDING_STATUSES
    ).update(
        status=MessageStatus.CANCELLED,
        status_reason=STOPPED_BY_PURCHASE,
        updated_at=timezone.now(),
    )
    TriggerFiring.objects.filter(InIds("pk", ids)).update(
        status=FiringStatus.STOPPED, reason=STOPPED_BY_PURCHASE
    )
    for _pk, scenario_id in firings:
        run.result.counts(scenario_id).stopped += 1


# 2. Who fires -------------------------------------------------------------------------------------


def _delay(scenario: TriggerScenario) -> dt.timedelta:
    return dt.timedelta(hours=scenario.delay_hours)


def _latest_per_client(rows: Iterable[Proposed]) -> list[Proposed]:
    """One occasion per client: the most recent (rows come newest first per client)."""
    seen: dict[int, Proposed] = {}
    for row in rows:
        seen.setdefault(row.client_id, row)
    return list(seen.values())


def _no_purchase_after_event() -> Any:
    return ~Exists(
        Purchase.objects.filter(
            client_id=OuterRef("client_id"), purchased_at__gt=OuterRef("occurred_at")
        )
    )


def _not_removed() -> Any:
    return ~Exists(
        Event.objects.filter(
            client_id=OuterRef("client_id"),
            product_id=OuterRef("product_id"),
            type=EventType.CART_REMOVE,
            occurred_at__gt=OuterRef("occurred_at"),
        )
    )


def _find_cart(run: _Run, scenario: TriggerScenario) -> list[Proposed]:
    """A cart_add within ``days``, at least ``delay_hours`` old, with no purchase after it and
    the product not taken out of the cart; the client's latest one."""
    delay = _delay(scenario)
    rows = (
        Event.objects.filter(
            type=EventType.CART_ADD,
            occurred_at__gt=run.now - dt.timedelta(days=scenario.days),
            occurred_at__lte=run.now - delay,
            client__is_anonymized=False,
        )
        .filter(_no_purchase_after_event(), _not_removed())
        .order_by("client_id", "-occurred_at", "-id")
        .values_list("id", "client_id", "occurred_at", "product_id")
    )
    return _latest_per_client(
        Proposed(scenario.pk, cid, f"cart:{pk}", 0, at + delay, product_id)
        for pk, cid, at, product_id in rows
    )


def _find_browse(run: _Run, scenario: TriggerScenario) -> list[Proposed]:
    """A product view within ``days``, at least ``delay_hours`` old, with neither a purchase
    nor anything put in the cart after it (that is the abandoned cart's business)."""
    delay = _delay(scenario)
    carted = Event.objects.filter(
        client_id=OuterRef("client_id"),
        type=EventType.CART_ADD,
        occurred_at__gt=OuterRef("occurred_at"),
    )
    rows = (
        Event.objects.filter(
            type=EventType.PRODUCT_VIEW,
            occurred_at__gt=run.now - dt.timedelta(days=scenario.days),
            occurred_at__lte=run.now - delay,
            client__is_anonymized=False,
            product__isnull=False,
        )
        .filter(_no_purchase_after_event(), ~Exists(carted))
        .order_by("client_id", "-occurred_at", "-id")
        .values_list("id", "client_id", "occurred_at", "product_id")
    )
    return _latest_per_client(
        Proposed(scenario.pk, cid, f"view:{pk}", 0, at + delay, product_id)
        for pk, cid, at, product_id in rows
    )


def _find_price_drop(run: _Run, scenario: TriggerScenario) -> list[Proposed]:
    """A cart_add within ``days`` with no purchase after it, whose product (still on sale) now
    costs less than the price the event recorded. Fires once per new price; the message waits
    ``delay_hours`` from now."""
    rows = (
        Event.objects.filter(
            type=EventType.CART_ADD,
            occurred_at__gt=run.now - dt.timedelta(days=scenario.days),
            client__is_anonymized=False,
            product__active=True,
            product__in_stock=True,
        )
        .filter(_no_purchase_after_event(), _not_removed())
        .order_by("client_id", "-occurred_at", "-id")
        .values_list("id", "client_id", "product_id", "product__price", "payload")
    )
    found = []
    for pk, cid, product_id, price, payload in rows:
        seen = _price(payload)
        if seen is None or price >= seen:
            continue
        found.append(
            Proposed(
                scenario.pk,
                cid,
                f"price:{pk}:{price}",
                0,
                run.now + _delay(scenario),
                product_id,
                {"old_price": seen, "new_price": price},
            )
        )
    return _latest_per_client(found)


def _price(payload: Any) -> Decimal | None:
    if not isinstance(payload, dict) or payload.get("price") in (None, ""):
        return None
    try:
        value = Decimal(str(payload["price"]))
    except (InvalidOperation, ValueError):
        return None
    return value if value.is_finite() and value > 0 else None


def _find_cross_sell(run: _Run, scenario: TriggerScenario) -> list[Proposed]:
    """``days`` after a purchase (plus the delay), within the catch-up window."""
    if _engine_driven(scenario):
        return _find_by_engine(run, scenario)
    after = dt.timedelta(days=scenario.days) + _delay(scenario)
    rows = (
        Purchase.objects.filter(
            purchased_at__gt=run.now - after - run.catch_up,
            purchased_at__lte=run.now - after,
            client__is_anonymized=False,
        )
        .order_by("client_id", "-purchased_at", "-id")
        .values_list("id", "client_id", "purchased_at")
    )
    return _latest_per_client(
        Proposed(scenario.pk, cid, f"purchase:{pk}", 0, at + after) for pk, cid, at in rows
    )


def _find_replenishment(run: _Run, scenario: TriggerScenario) -> list[Proposed]:
    """Without an offer of the replenish strategy: a product the client bought at least twice,
    last ``days`` ago (plus the delay, within the catch-up window) and not since."""
    if _engine_driven(scenario):
        return _find_by_engine(run, scenario)
    after = dt.timedelta(days=scenario.days) + _delay(scenario)
    due = (
        PurchaseItem.objects.filter(client__is_anonymized=False)
        .values("client_id", "product_id")
        .annotate(last=Max("purchased_at"), times=Count("purchase_id", distinct=True))
        .filter(last__gt=run.now - after - run.catch_up, last__lte=run.now - after, times__gte=2)
        .order_by()
    )
    pairs = {(r["client_id"], r["product_id"]): r["last"] for r in due}
    if not pairs:
        return []
    # The purchase each regular product was last bought in: its id names the occasion.
    rows = (
        PurchaseItem.objects.filter(
            InIds("client_id", sorted({c for c, _p in pairs})),
            purchased_at__gt=run.now - after - run.catch_up,
            purchased_at__lte=run.now - after,
        )
        .order_by("client_id", "-purchased_at", "-purchase_id")
        .values_list("client_id", "product_id", "purchased_at", "purchase_id")
    )
    found = [
        Proposed(scenario.pk, cid, f"purchase:{purchase_id}", 0, at + after, product_id)
        for cid, product_id, at, purchase_id in rows
        if pairs.get((cid, product_id)) == at
    ]
    return _latest_per_client(found)


def _find_by_engine(run: _Run, scenario: TriggerScenario) -> list[Proposed]:
    """Replenishment or cross-sell decided by the offer's strategy: the clients who bought
    within its look-back are asked in batches; those it proposes fire, once per latest purchase
    (a new purchase is a new occasion)."""
    from offers.engine import propose

    offer = scenario.offer
    assert offer is not None
    days = offer.recent_days if offer.strategy == "cross_sell" else offer.lookback_days
    # Who bought within the look-back and has not fired for their latest purchase yet (the
    # engine is not asked again, every evaluation, about clients it has already answered for).
    bought = Purchase.objects.filter(
        client_id=OuterRef("pk"), purchased_at__gt=run.now - dt.timedelta(days=int(days))
    )
    pool = list(
        _with_last_purchase(Client.objects.filter(Exists(bought), is_anonymized=False))
        .filter(~_fired_for_last_purchase(scenario, "purchase:"))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    kept = run.proposals.setdefault(scenario.pk, {})
    found: list[Proposed] = []
    delay = _delay(scenario)
    for batch in chunks(pool, run.batch_size):
        proposals = propose(
            batch,
            offers=[offer],
            channel=scenario.channels[0] if len(scenario.channels) == 1 else None,
            at=run.now,
            catalog=run.load_catalog(),
            assign_codes=False,
        )
        if not proposals:
            continue
        latest = _latest_purchases([p.client_id for p in proposals])
        for p in proposals:
            last = latest.get(p.client_id)
            if last is None or last[1] + delay > run.now:
                continue
            kept[p.client_id] = p
            found.append(
                Proposed(scenario.pk, p.client_id, f"purchase:{last[0]}", 0, last[1] + delay)
            )
    return found


def _latest_purchases(ids: Sequence[int]) -> dict[int, tuple[int, dt.datetime]]:
    rows = _with_last_purchase(Client.objects.filter(InIds("pk", ids))).values_list(
        "pk", "last_id", "last_at"
    )
    return {pk: (last_id, last_at) for pk, last_id, last_at in rows if last_id is not None}


def _find_birthday(run: _Run, scenario: TriggerScenario) -> list[Proposed]:
    """From ``days`` before the birthday until the day itself, in the client's local time (a
    client in Vladivostok is a day ahead of Moscow before Moscow's midnight). The occasion is
    the year of the birthday, so it fires once a year."""
    lead = int(scenario.days)
    # Local dates on Earth span the UTC date ±1 day; the birthdays they can be close to:
    base = run.now.astimezone(dt.UTC).date()
    wanted = {
        (day.month, day.day)
        for offset in range(-1, lead + 2)
        for day in [base + dt.timedelta(days=offset)]
    }
    if (2, 28) in wanted or (3, 1) in wanted:
        wanted.add((2, 29))  # born on 29 February: celebrated on the 28th in common years
    condition = Q()
    for month, day in sorted(wanted):
        condition |= Q(birth_date__month=month, birth_date__day=day)
    rows = (
        Client.objects.filter(condition, birth_date__isnull=False, is_anonymized=False)
        .order_by("pk")
        .values_list("pk", "birth_date", "time_zone")
    )
    delay = _delay(scenario)
    found = []
    for cid, born, tz_name in rows:
        if born is None:
            continue
        tz = zone(str(tz_name))
        today = run.now.astimezone(tz).date()
        birthday = _next_birthday(born, today)
        if (birthday - today).days > lead:
            continue
        starts = dt.datetime.combine(birthday - dt.timedelta(days=lead), dt.time(), tzinfo=tz)
        if starts + delay > run.now:
            continue
        found.append(Proposed(scenario.pk, cid, f"birthday:{birthday.year}", 0, starts + delay))
    return found


def _next_birthday(born: dt.date, today: dt.date) -> dt.date:
    for year in (today.year, today.year + 1):
        try:
            day = born.replace(year=year)
        except ValueError:  # 29 February in a common year
            day = dt.date(year, 2, 28)
        if day >= today:
            return day
    raise AssertionError("unreachable")  # pragma: no cover


def _find_win_back(run: _Run, scenario: TriggerScenario) -> list[Proposed]:
    """No purchase for ``days`` (plus the delay) since the last one; once per last purchase.
    Clients already fired for their last purchase are left out in SQL: the lapsed audience is
    most clients, and it is asked again every evaluation."""
    after = dt.timedelta(days=scenario.days) + _delay(scenario)
    rows = (
        _with_last_purchase(Client.objects.filter(is_anonymized=False))
        .filter(last_at__lte=run.now - after)
        .filter(~_fired_for_last_purchase(scenario, "winback:"))
        .values_list("pk", "last_id", "last_at")
    )
    return [
        Proposed(scenario.pk, cid, f"winback:{last_id}", 0, last_at + after)
        for cid, last_id, last_at in rows
    ]


def _with_last_purchase(clients: QuerySet[Client]) -> QuerySet[Any]:
    # QuerySet[Any]: the type checker cannot see the annotations' names.
    """Clients annotated with their latest purchase: ``last_id`` and ``last_at``."""
    latest = Purchase.objects.filter(client_id=OuterRef("pk")).order_by("-purchased_at", "-id")
    return clients.annotate(
        last_at=Subquery(latest.values("purchased_at")[:1]),
        last_id=Subquery(latest.values("id")[:1]),
    )


def _fired_for_last_purchase(scenario: TriggerScenario, prefix: str) -> Exists:
    """The scenario has fired for the client's latest purchase (occasion ``prefix<last_id>``)."""
    return Exists(
        TriggerFiring.objects.filter(
            scenario_id=scenario.pk,
            client_id=OuterRef("pk"),
            step=0,
            occasion=Concat(Value(prefix), Cast(OuterRef("last_id"), CharField())),
        )
    )


_FINDERS = {
    TriggerKind.ABANDONED_CART: _find_cart,
    TriggerKind.BROWSE_ABANDONMENT: _find_browse,
    TriggerKind.PRICE_DROP: _find_price_drop,
    TriggerKind.CROSS_SELL: _find_cross_sell,
    TriggerKind.REPLENISHMENT: _find_replenishment,
    TriggerKind.BIRTHDAY: _find_birthday,
    TriggerKind.WIN_BACK: _find_win_back,
}


def _followups(run: _Run, scenario: TriggerScenario) -> list[Proposed]:
    """The next step of every open chain whose follow-up is due (within the catch-up window).
    A chain the client has bought in since it started is stopped instead (one update)."""
    every = dt.timedelta(days=scenario.followup_days)
    later = TriggerFiring.objects.filter(
        scenario_id=OuterRef("scenario_id"),
        client_id=OuterRef("client_id"),
        occasion=OuterRef("occasion"),
        step__gt=OuterRef("step"),
    )
    started = TriggerFiring.objects.filter(
        scenario_id=OuterRef("scenario_id"),
        client_id=OuterRef("client_id"),
        occasion=OuterRef("occasion"),
        step=0,
    ).values("fired_at")[:1]
    rows = (
        TriggerFiring.objects.filter(
            scenario=scenario,
            step__lt=scenario.max_followups,
            fired_at__gt=run.now - every - run.catch_up,
            fired_at__lte=run.now - every,
            client__is_anonymized=False,
        )
        .exclude(status=FiringStatus.STOPPED)
        .filter(~Exists(later))
        .annotate(
            started=Subquery(started),
            bought=Exists(
                Purchase.objects.filter(
                    client_id=OuterRef("client_id"), purchased_at__gt=OuterRef("started")
                )
            ),
        )
        .values_list("id", "client_id", "occasion", "step", "fired_at", "bought")
    )
    found, stop = [], []
    for pk, cid, occasion, step, fired_at, bought in rows:
        if bought:
            stop.append(pk)
            continue
        found.append(Proposed(scenario.pk, cid, occasion, step + 1, fired_at + every))
    if stop:
        TriggerFiring.objects.filter(pk__in=stop).update(
            status=FiringStatus.STOPPED, reason=STOPPED_BY_PURCHASE
        )
        run.result.counts(scenario).stopped += len(stop)
    return found


# 3. Priority and planning -------------------------------------------------------------------------


def _plan(run: _Run, proposed: list[Proposed], policy: Policy) -> None:
    by_client: dict[int, list[Proposed]] = defaultdict(list)
    for row in proposed:
        by_client[row.client_id].append(row)
    rank = {pk: index for index, pk in enumerate(run.scenarios)}  # priority order
    for batch in chunks(sorted(by_client), run.batch_size):
        rows = [row for cid in batch for row in by_client[cid]]
        rows.sort(key=lambda r: (r.client_id, rank[r.scenario_id], r.step, -r.due.timestamp()))
        with transaction.atomic():
            _plan_batch(run, batch, rows, policy)


def _lock(ids: Sequence[int]) -> None:
    """The planners' per-client lock, taken here before the priority window is read so that a
    concurrent evaluation or campaign sees this batch's messages."""
    queryset = Client.objects.filter(pk__in=list(ids)).order_by("pk")
    if connection.features.has_select_for_update:
        queryset = queryset.select_for_update(no_key=True)
    list(queryset.values_list("pk", flat=True))


def _plan_batch(run: _Run, ids: Sequence[int], rows: list[Proposed], policy: Policy) -> None:
    _lock(ids)
    existing = set(
        TriggerFiring.objects.filter(client_id__in=list(ids), scenario_id__in=list(run.scenarios))
        .filter(occasion__in=sorted({r.occasion for r in rows}))
        .values_list("scenario_id", "client_id", "occasion", "step")
    )
    window = dt.timedelta(hours=settings.MESSAGING_TRIGGER_WINDOW_HOURS)
    recent: dict[int, list[_Recent]] = defaultdict(list)
    for values in Message.objects.filter(
        client_id__in=list(ids),
        firing__isnull=False,
        status__in=COUNTED_STATUSES,
        scheduled_for__gt=run.now - window,
    ).values_list(
        "client_id",
        "id",
        "status",
        "firing_id",
        "firing__scenario_id",
        "firing__scenario__priority",
        "firing__occasion",
    ):
        recent[values[0]].append(_Recent(*values[1:]))

    new: list[tuple[Proposed, str]] = []  # with the reason it is suppressed, or "" to plan
    winners: set[int] = set()
    displaced: dict[int, list[_Recent]] = {}  # per winning client: its planned lower messages
    for row in rows:
        if (row.scenario_id, row.client_id, row.occasion, row.step) in existing:
            continue
        priority = run.scenarios[row.scenario_id].priority
        others = [
            r
            for r in recent[row.client_id]
            if (r.scenario_id, r.occasion) != (row.scenario_id, row.occasion)
        ]
        if row.client_id in winners or any(r.priority >= priority for r in others):
            new.append((row, Reason.LOWER_PRIORITY))
            continue
        winners.add(row.client_id)
        new.append((row, ""))
        lower = [r for r in others if r.status == MessageStatus.PLANNED]
        if lower:
            displaced[row.client_id] = lower
    if not new:
        return
    # Before planning the winners, so their caps no longer count what gives way to them.
    cancelled = _displace(displaced)
    inserted = _insert_firings(run.now, new)
    suppressed: dict[str, list[int]] = defaultdict(list)
    to_plan: dict[int, list[tuple[int, Proposed]]] = defaultdict(list)
    for row, why in new:
        firing_id = inserted.get((row.scenario_id, row.client_id, row.occasion, row.step))
        if firing_id is None:
            continue  # a concurrent evaluation inserted it first, and plans it
        counts = run.result.counts(row.scenario_id)
        counts.fired += 1
        if why:
            counts.suppressed[why] += 1
        else:
            to_plan[row.scenario_id].append((firing_id, row))
    winners_planned: set[int] = set()  # clients whose winning message was planned
    for scenario_id, items in to_plan.items():
        scenario = run.scenarios[scenario_id]
        planned, reasons = _plan_scenario(run, scenario, items, policy)
        counts = run.result.counts(scenario_id)
        counts.planned += planned
        for firing_id, why in reasons.items():
            counts.suppressed[why] += 1
            suppressed[why].append(firing_id)
        winners_planned.update(row.client_id for f, row in items if f not in reasons)
    _displace_settle(run, cancelled, winners_planned, suppressed)
    for why, firing_ids in suppressed.items():
        TriggerFiring.objects.filter(pk__in=firing_ids).update(
            status=FiringStatus.SUPPRESSED, reason=why
        )


@dataclass(frozen=True)
class _Recent:
    """A trigger message of the client's within the priority window."""

    message_id: int
    status: str
    firing_id: int
    scenario_id: int
    priority: int
    occasion: str


def _displace(displaced: dict[int, list[_Recent]]) -> dict[int, list[_Recent]]:
    """Cancel the planned lower-priority messages of the batch's winners (the status only:
    :func:`_displace_settle` gives the reason or takes it back); per client, the ones
    cancelled. A message dispatch is claiming right now (its row locked) is left to go: it
    may already be on its way."""
    wanted = {r.message_id: (cid, r) for cid, lower in displaced.items() for r in lower}
    if not wanted:
        return {}
    queryset = Message.objects.filter(InIds("id", list(wanted)), status=MessageStatus.PLANNED)
    if connection.features.has_select_for_update_skip_locked:
        queryset = queryset.select_for_update(skip_locked=True)
    ids = list(queryset.values_list("id", flat=True))
    Message.objects.filter(InIds("id", ids)).update(status=MessageStatus.CANCELLED)
    cancelled: dict[int, list[_Recent]] = defaultdict(list)
    for pk in ids:
        cid, recent = wanted[pk]
        cancelled[cid].append(recent)
    return cancelled


def _displace_settle(
    run: _Run,
    cancelled: dict[int, list[_Recent]],
    winners_planned: set[int],
    suppressed: dict[str, list[int]],
) -> None:
    """The cancelled messages of clients whose winning message was planned stay cancelled,
    with their firings suppressed as outranked; the others are planned again as they were (no
    consent or a cap kept the winner back, and the lower message is better than nothing; in
    the same transaction, so nobody saw them cancelled)."""
    given_way = [r for cid in winners_planned & cancelled.keys() for r in cancelled[cid]]
    restore = [r.message_id for cid in cancelled.keys() - winners_planned for r in cancelled[cid]]
    if restore:
        Message.objects.filter(InIds("id", restore)).update(status=MessageStatus.PLANNED)
    if not given_way:
        return
    Message.objects.filter(InIds("id", [r.message_id for r in given_way])).update(
        status_reason=Reason.LOWER_PRIORITY, updated_at=timezone.now()
    )
    for recent in given_way:
        suppressed[Reason.LOWER_PRIORITY].append(recent.firing_id)
        run.result.counts(recent.scenario_id).suppressed[Reason.LOWER_PRIORITY] += 1
    run.result.outranked += len(given_way)


def _insert_firings(
    now: dt.datetime, new: Sequence[tuple[Proposed, str]]
) -> dict[tuple[int, int, str, int], int]:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING: the firings this call created, by key.
    A firing another evaluation created at the same time is not returned, so it is planned
    once."""
    created: dict[tuple[int, int, str, int], int] = {}
    fired_at = db_datetime(now)
    table = TriggerFiring._meta.db_table
    with connection.cursor() as cursor:
        for part in chunks(list(new), _INSERT_ROWS):
            values, params = [], []
            for row, why in part:
                values.append("(%s, %s, %s, %s, %s, %s, %s)")
                params.extend(
                    [
                        row.scenario_id,
                        row.client_id,
                        row.occasion,
                        row.step,
                        fired_at,
                        FiringStatus.SUPPRESSED if why else FiringStatus.PLANNED,
                        why,
                    ]
                )
            cursor.execute(
                f"INSERT INTO {table} "  # noqa: S608 - table name from the model
                "(scenario_id, client_id, occasion, step, fired_at, status, reason) "
                f"VALUES {', '.join(values)} "
                "ON CONFLICT (scenario_id, client_id, occasion, step) DO NOTHING "
                "RETURNING id, scenario_id, client_id, occasion, step",
                params,
            )
            for pk, scenario_id, client_id, occasion, step in cursor.fetchall():
                created[(scenario_id, client_id, occasion, step)] = pk
    return created


def _plan_scenario(
    run: _Run,
    scenario: TriggerScenario,
    items: Sequence[tuple[int, Proposed]],
    policy: Policy,
) -> tuple[int, dict[int, str]]:
    """Plan the messages of one scenario's winning firings of a batch; return how many were
    planned and, per firing left without a message, why."""
    origin = Origin(
        channels=[c for c in scenario.channels if c in Channel.values],
        key_prefix=f"trigger:{scenario.pk}",
        prefer_client_channel=scenario.prefer_client_channel,
        target=TimeTarget.ASAP if scenario.kind in ASAP_KINDS else TimeTarget.PREFERRED,
        landing_url=scenario.landing_url,
    )
    if scenario.offer_id is not None:
        candidates = _offer_candidates(run, scenario, items)
    else:
        candidates = _plain_candidates(run, scenario, items)
    firing_of = {row.client_id: firing_id for firing_id, row in items}
    reasons: dict[int, str] = {}
    offered = {c.client_id for c in candidates}
    for firing_id, row in items:
        if row.client_id not in offered:
            reasons[firing_id] = Reason.NO_PRODUCT
    outcome = plan_batch(origin=origin, candidates=candidates, policy=policy, now=run.now)
    for client_id, why in outcome.reasons.items():
        reasons[firing_of[client_id]] = why
    return outcome.planned, reasons


def _offer_candidates(
    run: _Run, scenario: TriggerScenario, items: Sequence[tuple[int, Proposed]]
) -> list[Candidate]:
    """The offer engine's proposals for the batch (found already when the engine decided who
    fires); the firing's own product leads when the offer names no products of its own."""
    from offers.engine import propose

    kept = run.proposals.get(scenario.pk, {})
    missing = [row.client_id for _f, row in items if row.client_id not in kept]
    proposals = dict(kept)
    if missing:
        for p in propose(
            missing,
            offers=[scenario.offer],
            channel=scenario.channels[0] if len(scenario.channels) == 1 else None,
            at=run.now,
            catalog=run.load_catalog(),
            assign_codes=False,
        ):
            proposals[p.client_id] = p
    candidates = []
    for firing_id, row in items:
        found = proposals.get(row.client_id)
        if found is None:
            continue
        candidates.append(proposal_candidate(found, not_before=row.due, firing_id=firing_id))
    return candidates


def _plain_candidates(
    run: _Run, scenario: TriggerScenario, items: Sequence[tuple[int, Proposed]]
) -> list[Candidate]:
    """The scenario's own texts rendered per client (sandboxed templates, as campaigns do),
    with the product of the occasion — unless it is from a sensitive category, which is never
    named."""
    from offers.engine import client_contexts

    templates = plain_templates(
        sms=scenario.sms_text,
        voice=scenario.voice_script,
        email_subject=scenario.email_subject,
        email_body=scenario.email_body,
        channels=scenario.channels,
    )
    products = _occasion_products(run, [row for _f, row in items])
    people = client_contexts([row.client_id for _f, row in items])
    candidates = []
    for firing_id, row in items:
        product = products.get(row.product_id) if row.product_id else None
        context = {
            **people.get(row.client_id, {"client": {}}),
            "product": product or {},
            "products": [product] if product else [],
            "reason": "",
        }
        texts = render_texts(templates, context)
        candidates.append(
            Candidate(
                client_id=row.client_id,
                texts=texts,
                reason=_reason(scenario, row, product),
                products=json_safe([product]) if product else [],
                not_before=row.due,
                firing_id=firing_id,
            )
        )
    return candidates


def _occasion_products(run: _Run, rows: Sequence[Proposed]) -> dict[int, dict[str, Any]]:
    """Template context of the firings' products (follow-ups read theirs from the occasion's
    event: one query), sensitive ones left out."""
    event_ids = {
        int(row.occasion.split(":")[1]): row
        for row in rows
        if row.product_id is None and row.occasion.split(":")[0] in ("cart", "view", "price")
    }
    if event_ids:
        for pk, product_id in Event.objects.filter(pk__in=list(event_ids)).values_list(
            "pk", "product_id"
        ):
            event_ids[pk].product_id = product_id
    wanted = {row.product_id for row in rows if row.product_id}
    if not wanted:
        return {}
    catalog = run.load_catalog()
    out = {}
    for pid in wanted:
        info = catalog.products.get(pid)
        if info is None or info.sensitive:
            continue
        out[pid] = {
            "id": pid,
            "name": info.name,
            "brand": info.brand,
            "category": catalog.category_name(info.category_id),
            "price": info.price,
            "price_with_benefit": info.price,
            "sku": info.sku,
        }
    return out


def _reason(scenario: TriggerScenario, row: Proposed, product: dict[str, Any] | None) -> str:
    """Why this client gets the message, from facts, for the operator's card."""
    name = product["name"] if product else ""
    kind = scenario.kind
    if kind == TriggerKind.ABANDONED_CART:
        return _("Left “%s” in the cart.") % name if name else _("Left goods in the cart.")
    if kind == TriggerKind.BROWSE_ABANDONMENT:
        return _("Looked at “%s” recently.") % name if name else _("Looked at goods recently.")
    if kind == TriggerKind.PRICE_DROP:
        old, new = row.fact.get("old_price"), row.fact.get("new_price")
        if name and old is not None and new is not None:
            return _("“%(product)s” in the cart now costs %(new)s instead of %(old)s.") % {
                "product": name,
                "new": formats.number_format(new, 2),
                "old": formats.number_format(old, 2),
            }
        return _("Goods left in the cart have become cheaper.")
    if kind == TriggerKind.BIRTHDAY:
        return _("Birthday soon.")
    if kind == TriggerKind.WIN_BACK:
        return _("No purchases for %(days)s days.") % {"days": scenario.days}
    if kind == TriggerKind.REPLENISHMENT:
        return (
            _("Usually buys “%s” again about now.") % name
            if name
            else _("Time to replenish a regular purchase.")
        )
    return _("Bought %(days)s days ago.") % {"days": scenario.days}
