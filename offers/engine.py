"""The offer engine: clients in, proposals out, set-based.

``propose(clients, offers=..., channel=..., at=...)`` returns, for every (client, offer) pair the
client is eligible for, a ``Proposal``: the variant (or the control group), the products chosen by
the offer's strategy, the promo pool (and the code when ``assign_codes``), the rendered text per
channel with its SMS figures, the reason, the facts behind it, and a score.

The number of queries depends on the number of offers, never on the number of clients: the
offers with their variants, segments and products (5), eligibility (1 per distinct audience),
the replenish and cross-sell statistics (1 per such offer: computed in the database, so only
the clients with something due come back), the purchase history for the other strategies (1,
when there are any), cross-sell rules and accepted associations (2), the clients chosen with
their tier and points (1), their promo code history (2), the catalog snapshot (3, or 0 when one
is passed in), and, when assigning codes, a few per promo pool.

Python works per proposal, not per client: the clients nothing is due for never leave the
database, and rendering skips Django's ``Context`` for text-and-variable templates.

What ``messaging`` needs to apply consent, caps and quiet hours is on each proposal: the client,
the offer id, the channels, the validity window and the rendered texts.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import defaultdict
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import reduce
from operator import or_
from typing import Any

from django.db import connection, connections
from django.db.models import Count, Q, QuerySet
from django.utils import timezone, translation
from django.utils.translation import get_language

from crm.db.raw import InIds, pg_int_array
from crm.models import Client, PurchaseItem
from loyalty.models import LoyaltyAccount, Tier
from offers import pricing
from offers.assignment import VariantPicker, in_holdout_share
from offers.catalog import Catalog, ProductInfo
from offers.models import (
    AssociationStatus,
    CrossSellRule,
    Offer,
    OfferStatus,
    ProductAssociation,
    ProductStrategy,
    PromoCode,
)
from offers.sms import SmsInfo, fit_sms
from offers.strategies import (
    DEFAULT_REASONS,
    NEUTRAL_REASON,
    SET_BASED,
    STRATEGIES,
    Choice,
    CrossSellSpec,
    StrategyInput,
    sql_ids,
)
from offers.templating import (
    TemplateCheckError,
    compile_message_template,
    compile_reason_template,
    render,
    render_html,
)
from segments.selectors import segment_clients

CHANNEL_ORDER = ("sms", "call", "email")
UNKNOWN_COST_MARGIN = Decimal("0.30")  # assumed margin share when a product has no cost


@dataclass
class RenderedText:
    channel: str
    text: str
    subject: str = ""
    sms: SmsInfo | None = None
    transliterated: bool = False


@dataclass
class Proposal:
    client_id: int
    offer_id: int
    offer_name: str
    priority: int
    strategy: str
    is_control: bool
    variant_id: int | None
    variant_name: str
    channels: list[str]
    valid_from: dt.datetime
    valid_until: dt.datetime
    products: list[dict[str, Any]]
    reason: str
    facts: dict[str, Any]
    score: float
    expected_value: Decimal
    promo_pool_id: int | None = None
    promo_code: str = ""
    texts: dict[str, RenderedText] = field(default_factory=dict)

    @property
    def product_ids(self) -> list[int]:
        return [p["id"] for p in self.products]


def live_offers(*, at: dt.datetime) -> QuerySet[Offer]:
    return Offer.objects.filter(status=OfferStatus.ACTIVE, starts_at__lte=at, ends_at__gt=at)


def _client_ids(clients: Iterable[Any] | QuerySet[Client]) -> list[int]:
    if isinstance(clients, QuerySet):
        return list(clients.values_list("pk", flat=True))
    ids = [c if isinstance(c, int) else int(c.pk) for c in clients]
    return list(dict.fromkeys(ids))


def _load_offers(offers: Iterable[Any] | None, at: dt.datetime) -> list[Offer]:
    if offers is None:
        queryset = live_offers(at=at)
    else:
        ids = [o if isinstance(o, int) else o.pk for o in offers]
        queryset = Offer.objects.filter(pk__in=ids)
    return list(
        queryset.select_related("promo_pool").prefetch_related(
            "variants", "segments", "exclude_segments", "fixed_products"
        )
    )


def _eligible(offer: Offer, ids: Sequence[int], at: dt.datetime) -> set[int]:
    """One query: the clients of the batch in a target segment and in no exclusion segment.
    Each segment's query is narrowed to the batch, so it never runs over the whole table."""

    def members(segment: Any) -> QuerySet[Client, Any]:
        return segment_clients(segment=segment, now=at).filter(InIds("pk", ids)).values("pk")

    targets = list(offer.segments.all())
    if len(targets) == 1:
        # One target segment (the usual case): its own query, narrowed to the batch, without
        # joining the batch to the clients a second time.
        queryset = segment_clients(segment=targets[0], now=at).filter(
            InIds("pk", ids), is_anonymized=False
        )
    else:
        queryset = Client.objects.filter(InIds("pk", ids), is_anonymized=False)
    if len(targets) > 1:
        queryset = queryset.filter(reduce(or_, (Q(pk__in=members(s)) for s in targets)))
    for segment in offer.exclude_segments.all():
        queryset = queryset.exclude(pk__in=members(segment))
    return set(queryset.values_list("pk", flat=True))


def _eligibility(
    offers: Sequence[Offer], ids: Sequence[int], at: dt.datetime
) -> dict[int, set[int]]:
    """Eligible clients per offer; offers with the same target and exclusion segments share
    one query."""
    by_audience: dict[tuple[tuple[int, ...], tuple[int, ...]], set[int]] = {}
    out = {}
    for offer in offers:
        audience = (
            tuple(sorted(s.pk for s in offer.segments.all())),
            tuple(sorted(s.pk for s in offer.exclude_segments.all())),
        )
        if audience not in by_audience:
            by_audience[audience] = _eligible(offer, ids, at)
        out[offer.pk] = by_audience[audience]
    return out


def _cross_sell_specs() -> list[CrossSellSpec]:
    specs = [
        CrossSellSpec(
            r.source_product_id,
            r.source_category_id,
            r.target_product_id,
            r.target_category_id,
            r.reason_text,
            r.priority,
        )
        for r in CrossSellRule.objects.filter(is_active=True)
    ]
    for a in ProductAssociation.objects.filter(status=AssociationStatus.ACCEPTED):
        specs.append(
            CrossSellSpec(
                None,
                a.antecedent_id,
                None,
                a.consequent_id,
                a.reason_text,
                priority=0,
                weight=float(a.lift),
                mined=True,
            )
        )
    return specs


def _histories(ids: Sequence[int], *, since: dt.datetime, at: dt.datetime) -> dict[int, list[Any]]:
    """Each client's purchase items as (product id, Unix seconds), oldest first: one query,
    with the client ids as one array (PostgreSQL) or JSON (SQLite) parameter."""
    out: dict[int, list[Any]] = defaultdict(list)
    table = PurchaseItem._meta.db_table
    if connection.vendor == "postgresql":
        sql = (
            "SELECT client_id, product_id, EXTRACT(EPOCH FROM purchased_at)::bigint "
            f"FROM {table} WHERE client_id = ANY(%s::bigint[]) AND purchased_at >= %s "
            "AND purchased_at <= %s ORDER BY client_id, purchased_at"
        )
        params: list[Any] = [pg_int_array(ids), since, at]
    elif connection.vendor == "sqlite":
        sql = (
            "SELECT client_id, product_id, CAST(strftime('%%s', purchased_at) AS INTEGER) "
            f"FROM {table} WHERE client_id IN (SELECT value FROM json_each(%s)) "
            "AND purchased_at >= %s AND purchased_at <= %s ORDER BY client_id, purchased_at"
        )
        params = [json.dumps(list(ids)), since, at]
    else:  # pragma: no cover - other backends: the ORM
        rows = (
            PurchaseItem.objects.filter(
                client_id__in=ids, purchased_at__gte=since, purchased_at__lte=at
            )
            .order_by("client_id", "purchased_at")
            .values_list("client_id", "product_id", "purchased_at")
        )
        for client_id, product_id, when in rows:
            out[client_id].append((product_id, int(when.timestamp())))
        return out
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    for client_id, product_id, ts in rows:
        out[client_id].append((product_id, int(ts)))
    return out


def _promo_history(
    ids: Sequence[int], offers: Sequence[Offer]
) -> tuple[set[tuple[int, int]], dict[int, tuple[int, int]], dict[int, int], set[tuple[int, int]]]:
    """(offer, client) pairs excluded by a redemption, each client's (assigned, redeemed)
    counts, and for offers with a quantity limit the codes handed out and the (offer, client)
    pairs of the batch already holding one. Two queries, two more with limited offers."""
    excluded: set[tuple[int, int]] = set()
    pool_offers: dict[int, list[int]] = defaultdict(list)
    for offer in offers:
        if offer.promo_pool_id:
            pool_offers[offer.promo_pool_id].append(offer.pk)
    offer_ids = [o.pk for o in offers]
    redeemed = PromoCode.objects.filter(InIds("client_id", ids), redeemed_at__isnull=False).filter(
        Q(offer_id__in=offer_ids) | Q(pool_id__in=list(pool_offers))
    )
    for client_id, offer_id, pool_id in redeemed.values_list("client_id", "offer_id", "pool_id"):
        if offer_id is not None:
            excluded.add((offer_id, client_id))
        for other in pool_offers.get(pool_id, ()):
            excluded.add((other, client_id))
    responses = {
        row["client_id"]: (row["assigned"], row["redeemed"])
        for row in PromoCode.objects.filter(InIds("client_id", ids))
        .values("client_id")
        .annotate(assigned=Count("id"), redeemed=Count("id", filter=Q(redeemed_at__isnull=False)))
        .order_by()
    }
    limited = [o.pk for o in offers if o.quantity_limit is not None]
    issued: dict[int, int] = {}
    holders: set[tuple[int, int]] = set()
    if limited:
        holders = set(
            PromoCode.objects.filter(InIds("client_id", ids), offer_id__in=limited).values_list(
                "offer_id", "client_id"
            )
        )
        issued = dict(
            PromoCode.objects.filter(offer_id__in=limited)
            .values_list("offer_id")
            .annotate(n=Count("id"))
            .order_by()
            .values_list("offer_id", "n")
        )
    return excluded, responses, issued, holders


class _OfferPlan:
    """Everything about one offer that does not depend on the client, computed once."""

    def __init__(self, offer: Offer, catalog: Catalog, specs: Sequence[CrossSellSpec], at: Any):
        self.offer = offer
        self.catalog = catalog
        self.min_margin = pricing.min_margin_percent(offer)
        self.picker = VariantPicker(offer.pk, list(offer.variants.all()))
        self.benefit = {
            "kind": offer.benefit_kind,
            "value": offer.benefit_value,
            "text": pricing.benefit_text(
                offer.benefit_kind, offer.benefit_value, offer.benefit_text
            ),
        }
        self.input = StrategyInput(
            offer=offer,
            catalog=catalog,
            at=at,
            cross_sell=specs if offer.strategy == ProductStrategy.CROSS_SELL else (),
            product_ok=self.keeps_margin,
            fixed_products=[p.pk for p in offer.fixed_products.all()],
        )
        self.strategy = STRATEGIES[offer.strategy]
        self._products: dict[int, dict[str, Any]] = {}
        self.valid_until_date = timezone.localtime(
            offer.ends_at - dt.timedelta(microseconds=1)
        ).date()
        self.reason_default = offer.reason_template or DEFAULT_REASONS[offer.strategy]
        # Per-proposal constants, worked out once.
        self.channels = [c for c in CHANNEL_ORDER if c in (offer.channels or [])]
        self.variants = {v.pk: v for v in self.picker.variants}
        self.code_pattern = _code_pattern(offer)
        self._margins: dict[int, Decimal] = {}
        self._values: dict[tuple[int, float], Decimal] = {}
        self.holdout_share = float(offer.holdout_percent) / 100

    def keeps_margin(self, product: ProductInfo) -> bool:
        return pricing.keeps_margin(
            price=product.price,
            cost=product.cost,
            kind=self.offer.benefit_kind,
            value=self.offer.benefit_value,
            min_margin=self.min_margin,
        )

    def product(self, product_id: int) -> dict[str, Any]:
        cached = self._products.get(product_id)
        if cached is None:
            p = self.catalog.products[product_id]
            cached = {
                "id": p.id,
                "sku": p.sku,
                "name": p.name,
                "brand": p.brand,
                "category": self.catalog.category_name(p.category_id),
                "price": p.price,
                "price_with_benefit": pricing.price_with_benefit(
                    p.price, self.offer.benefit_kind, self.offer.benefit_value
                ),
            }
            self._products[product_id] = cached
        return cached

    def expected_value(self, choice: Choice, response: tuple[int, int]) -> tuple[float, Decimal]:
        """Propensity (the strategy's score, tilted by the client's response history) times
        the margin left on the first product after the benefit."""
        assigned, redeemed = response
        propensity = choice.score * ((redeemed + 1) / (assigned + 2)) / 0.5
        # The value depends on the first product and the rounded propensity only, which repeat
        # across a batch (scores come from whole days): the Decimal work is done once each.
        key = (choice.products[0], round(propensity, 4))
        value = self._values.get(key)
        if value is not None:
            return propensity, value
        margin = self._margins.get(choice.products[0])
        if margin is None:
            first = self.catalog.products[choice.products[0]]
            offer = self.offer
            reduced = pricing.price_with_benefit(
                first.price, offer.benefit_kind, offer.benefit_value
            )
            cost = first.cost if first.cost is not None else first.price * (1 - UNKNOWN_COST_MARGIN)
            margin = reduced - cost
            if offer.benefit_kind == "points":
                margin -= offer.benefit_value
            self._margins[choice.products[0]] = margin
        value = (margin * Decimal(str(key[1]))).quantize(pricing.CENT)
        self._values[key] = value
        return propensity, value


def propose(
    clients: Iterable[Any] | QuerySet[Client],
    *,
    offers: Iterable[Any] | None = None,
    channel: str | None = None,
    at: dt.datetime | None = None,
    catalog: Catalog | None = None,
    assign_codes: bool = False,
    render_texts: bool = True,
    holdout: bool = True,
) -> list[Proposal]:
    """Proposals for a batch of clients, ranked per client: priority, then expected value.

    ``offers`` defaults to the live offers (active, within their window); explicit offers are
    used as they are (a preview of a draft). ``channel`` keeps the offers that may use it and
    renders that channel only. ``assign_codes`` assigns promo codes (``promo_code_assign_many``)
    to the non-control proposals and renders them into the texts; without it the texts show the
    pool's code pattern. ``holdout=False`` (the admin preview) treats nobody as control.
    """
    from offers.services import promo_code_assign_many

    at = at or timezone.now()
    ids = _client_ids(clients)
    offer_list = [
        o for o in _load_offers(offers, at) if channel is None or channel in (o.channels or [])
    ]
    if not ids or not offer_list:
        return []
    eligible = _eligibility(offer_list, ids, at)
    everyone = sorted(set().union(*eligible.values()))
    if not everyone:
        return []
    catalog = catalog or Catalog.load(at=at)
    specs = (
        _cross_sell_specs()
        if any(o.strategy == ProductStrategy.CROSS_SELL for o in offer_list)
        else []
    )
    plans = [_OfferPlan(offer, catalog, specs, at) for offer in offer_list]
    # Strategies with a set-based form read the statistics they need straight from the
    # database; the others get each client's purchase history (one query for all of them).
    per_client = [
        p
        for p in plans
        if p.offer.strategy not in SET_BASED and p.offer.strategy != ProductStrategy.FIXED
    ]
    histories = (
        _histories(
            everyone,
            since=at - dt.timedelta(days=max(int(p.offer.lookback_days) for p in per_client)),
            at=at,
        )
        if per_client
        else {}
    )
    choices: dict[int, dict[int, Choice]] = {}
    usable_cache: dict[tuple[int, tuple[int, bool]], list[Any]] = {}
    for plan in plans:
        offer = plan.offer
        members = sorted(eligible[offer.pk])
        many = SET_BASED.get(offer.strategy)
        if many is not None:
            choices[offer.pk] = many(plan.input, members)
            continue
        found: dict[int, Choice] = {}
        for client_id in members:
            key = (client_id, plan.input.history_key)
            usable = usable_cache.get(key)
            if usable is None:
                usable = plan.input.usable_history(histories.get(client_id, ()))
                usable_cache[key] = usable
            choice = plan.strategy(plan.input, usable)
            if choice is not None:
                found[client_id] = choice
        choices[offer.pk] = found
    # Only the clients something was chosen for are read further.
    chosen = sorted(set().union(*(c.keys() for c in choices.values())))
    people = client_contexts(chosen)
    excluded, responses, issued, holders = _promo_history(chosen, offer_list)

    language = get_language()  # once: asking costs a context-local lookup
    proposals: list[Proposal] = []
    for plan in plans:
        offer = plan.offer
        offered: list[Proposal] = []
        for client_id, choice in sorted(choices[offer.pk].items()):
            if (offer.pk, client_id) in excluded:
                continue
            offered.append(
                _proposal(
                    plan,
                    choice,
                    client_id,
                    people[client_id],
                    responses.get(client_id, (0, 0)),
                    holdout=holdout,
                    language=language,
                )
            )
        if offer.quantity_limit is not None:
            # Clients already holding a code of the offer keep it; the rest share what is left
            # under the limit, best scores first.
            room = max(0, offer.quantity_limit - issued.get(offer.pk, 0))
            new = sorted(
                (p for p in offered if not p.is_control and (offer.pk, p.client_id) not in holders),
                key=lambda p: -p.score,
            )
            keep = {id(p) for p in new[:room]}
            offered = [
                p
                for p in offered
                if p.is_control or id(p) in keep or (offer.pk, p.client_id) in holders
            ]
        if assign_codes and offer.promo_pool is not None:
            wanted = [p.client_id for p in offered if not p.is_control]
            codes = promo_code_assign_many(
                pool=offer.promo_pool, client_ids=wanted, offer=offer, at=at
            )
            offered = [p for p in offered if p.is_control or p.client_id in codes]
            for p in offered:
                p.promo_code = codes.get(p.client_id, "")
        if render_texts:
            for p in offered:
                if not p.is_control:
                    _render(plan, p, people[p.client_id], channel, language)
        proposals.extend(offered)
    proposals.sort(key=lambda p: (p.client_id, -p.priority, -p.expected_value, p.offer_id))
    return proposals


def client_contexts(ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """What templates may say about each client: names, city, gender, tier and points.

    One query; the loyalty account (one per client at most) and its tier are read by index per
    client, which the planner would otherwise hash-join after scanning every account."""
    if not ids:
        return {}
    client = Client._meta.db_table
    account = LoyaltyAccount._meta.db_table
    tier = Tier._meta.db_table
    where, params = sql_ids("c.id", ids)
    sql = f"""
        SELECT c.id, c.first_name, c.middle_name, c.last_name, c.city, c.gender,
               (SELECT t.name FROM {account} a JOIN {tier} t ON t.id = a.tier_id
                WHERE a.client_id = c.id),
               (SELECT a.balance FROM {account} a WHERE a.client_id = c.id)
        FROM {client} c WHERE {where}
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    out = {}
    for cid, first, middle, last, city, gender, tier_name, balance in rows:
        out[cid] = {
            "client": {
                "first_name": first,
                "middle_name": middle,
                "last_name": last,
                "full_name": " ".join(p for p in (last, first, middle) if p),
                "name": " ".join(p for p in (first, middle) if p),
                "city": city,
                "gender": gender,
            },
            "tier": tier_name or "",
            "points": balance or 0,
        }
    return out


def _proposal(
    plan: _OfferPlan,
    choice: Choice,
    client_id: int,
    person: dict[str, Any],
    response: tuple[int, int],
    *,
    holdout: bool = True,
    language: str | None = None,
) -> Proposal:
    offer = plan.offer
    control = holdout and in_holdout_share(offer.pk, client_id, plan.holdout_share)
    variant = None if control else plan.picker.pick(client_id)
    products = [plan.product(pid) for pid in choice.products]
    propensity, expected = plan.expected_value(choice, response)
    return Proposal(
        client_id=client_id,
        offer_id=offer.pk,
        offer_name=offer.name,
        priority=offer.priority,
        strategy=offer.strategy,
        is_control=control,
        variant_id=variant.pk if variant else None,
        variant_name="control" if control else (variant.name if variant else ""),
        channels=list(plan.channels),
        valid_from=offer.starts_at,
        valid_until=offer.ends_at,
        products=products,
        reason=_reason(plan, choice, person, products, language),
        # Facts from sensitive categories are never spoken, nor handed on.
        facts={} if choice.sensitive_fact else choice.fact,
        score=round(propensity, 4),
        expected_value=expected,
        promo_pool_id=offer.promo_pool_id,
    )


def _reason(
    plan: _OfferPlan,
    choice: Choice,
    person: dict[str, Any],
    products: list[Any],
    language: str | None = None,
) -> str:
    if choice.sensitive_fact:
        return NEUTRAL_REASON
    source = plan.offer.reason_template or choice.reason_template or plan.reason_default
    try:
        checked = compile_reason_template(source)
    except TemplateCheckError:
        checked = compile_reason_template(DEFAULT_REASONS[plan.offer.strategy])
    context = {
        "fact": choice.fact,
        "client": person["client"],
        "product": products[0] if products else {},
        "products": products,
    }
    return render(checked, context, language=language)


def _code_pattern(offer: Offer) -> str:
    pool = offer.promo_pool
    if pool is None:
        return ""
    return f"{pool.prefix}{'X' * pool.code_length}"


def _render(
    plan: _OfferPlan,
    p: Proposal,
    person: dict[str, Any],
    channel: str | None,
    language: str | None = None,
) -> None:
    """Render the proposal's texts, for one channel or for every channel of the offer."""
    offer = plan.offer
    variant = plan.variants.get(p.variant_id)
    if variant is None:
        return
    context = {
        **person,
        "product": p.products[0] if p.products else {},
        "products": p.products,
        "benefit": plan.benefit,
        "promo_code": p.promo_code or plan.code_pattern,
        "valid_until": plan.valid_until_date,
        "store": offer.store,
        "reason": p.reason,
        "offer": {"name": offer.name},
    }
    for name in [channel] if channel else p.channels:
        try:
            p.texts[name] = render_channel(variant, name, context, language=language)
        except TemplateCheckError:
            continue


def render_channel(
    variant: Any, channel: str, context: dict[str, Any], *, language: str | None = None
) -> RenderedText:
    """One channel's text of a variant (``TemplateCheckError`` if a template is refused)."""
    if channel == "sms":
        text = render(compile_message_template(variant.sms_text), context, language=language)
        sent, info = fit_sms(text, transliterate_if_needed=variant.transliterate_sms)
        return RenderedText("sms", sent, sms=info, transliterated=sent != text)
    if channel == "call":
        script = render(compile_message_template(variant.voice_script), context, language=language)
        return RenderedText("call", script)
    subject = render(compile_message_template(variant.email_subject), context, language=language)
    body = render_html(compile_message_template(variant.email_body, html=True), context)
    return RenderedText("email", body, subject=subject)


# Many batches ------------------------------------------------------------------------------------

PARALLEL_BATCHES = 2


def propose_batches(
    batches: Iterable[Sequence[int]], *, parallel: int | None = None, **options: Any
) -> Generator[list[Proposal], None, None]:
    """``propose(batch, **options)`` for each batch, yielded in order; ``batches`` is read
    lazily, one batch ahead of the work at most.

    A batch spends about half its time waiting for PostgreSQL and half in Python; one process
    doing one batch at a time leaves a core idle either way. On PostgreSQL outside a
    transaction, ``parallel`` threads (default ``PARALLEL_BATCHES``), each with its own
    connection, work on consecutive batches, so one batch's queries run while another's Python
    does (or while the caller works on the batch before): at most ``parallel`` batches are
    computed ahead of the one the caller is reading. Inside a transaction (a test, a caller's
    atomic block) another connection would not see its uncommitted rows, so the batches run one
    by one on the caller's connection.
    """
    # Decided now, not at the first ``next()``: the caller may read inside a transaction.
    if not batches_in_parallel(parallel):
        return (propose(batch, **options) for batch in batches)
    workers = PARALLEL_BATCHES if parallel is None else parallel
    return _BatchPipeline(iter(batches), workers, options).results()


def batches_in_parallel(parallel: int | None = None) -> bool:
    """Whether ``propose_batches`` would use threads here and now."""
    workers = PARALLEL_BATCHES if parallel is None else parallel
    return workers > 1 and connection.vendor == "postgresql" and not connection.in_atomic_block


class _BatchPipeline:
    """Worker threads take the next batch in order and leave its proposals (or its error) for
    the reader; they stop when the batches run out or the reader goes away."""

    def __init__(self, batches: Iterator[Sequence[int]], workers: int, options: dict[str, Any]):
        self.batches = batches
        self.options = options
        self.workers = workers
        self.done: dict[int, list[Proposal] | BaseException] = {}
        self.taken = 0  # batches handed to a worker
        self.read = 0  # batches the reader has taken
        self.total: int | None = None  # known once the batches ran out
        self.stopped = False
        self.changed = threading.Condition()
        # What the caller's thread has active, the workers' threads must have too.
        self.language = get_language()
        self.zone = timezone.get_current_timezone()

    def results(self) -> Generator[list[Proposal], None, None]:
        threads = [
            threading.Thread(target=self._work, name=f"propose-{n}", daemon=True)
            for n in range(self.workers)
        ]
        for thread in threads:
            thread.start()
        try:
            index = 0
            while True:
                with self.changed:
                    while index not in self.done and (self.total is None or index < self.total):
                        self.changed.wait()
                    if index not in self.done:
                        return  # every batch read
                    result = self.done.pop(index)
                    self.read = index = index + 1
                    self.changed.notify_all()
                if isinstance(result, BaseException):
                    raise result
                yield result
        finally:
            with self.changed:
                self.stopped = True
                self.changed.notify_all()
            for thread in threads:
                thread.join()

    def _next(self) -> tuple[int, Sequence[int]] | None:
        with self.changed:
            while not self.stopped and self.taken - self.read >= self.workers:
                self.changed.wait()  # far enough ahead of the reader
            if self.stopped or self.total is not None:
                return None
            try:
                batch = next(self.batches)  # under the lock: batches are taken in order
            except StopIteration:
                self.total = self.taken
                self.changed.notify_all()
                return None
            except BaseException as exc:  # reading the batches failed: the reader raises it
                self.done[self.taken] = exc
                self.total = self.taken = self.taken + 1
                self.changed.notify_all()
                return None
            self.taken += 1
            return self.taken - 1, batch

    def _work(self) -> None:
        try:
            with translation.override(self.language), timezone.override(self.zone):
                while (taken := self._next()) is not None:
                    index, batch = taken
                    result: list[Proposal] | BaseException
                    try:
                        result = propose(batch, **self.options)
                    except BaseException as exc:  # handed to the reader, who raises it
                        result = exc
                    with self.changed:
                        self.done[index] = result
                        self.changed.notify_all()
        finally:
            connections.close_all()  # this thread's own connections
