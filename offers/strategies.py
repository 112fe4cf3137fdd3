"""Product strategies: for one client's purchase history, which products and which fact.

Each strategy is a pure function of the client's history (``(product id, purchased at)`` pairs,
oldest first), the catalog snapshot and the offer's settings; the engine loads all of those for a
whole batch in a bounded number of queries. A strategy returns a ``Choice`` (products, the fact
that explains them, a propensity score in [0, 1]) or None when it has nothing for the client.

``replenish`` and ``cross_sell`` also have a set-based form (``SET_BASED``, at the end): the same
decision for a whole batch, with the per-client statistics computed in SQL, which is what the
engine runs; the per-client functions stay the reference the tests compare them with.

Products are offerable only (in stock and active), never from a sensitive category unless the
offer allows it, and never below the offer's margin guard. History in sensitive categories is not
used at all unless the offer allows sensitive products, and even then its facts are not spoken.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.utils import timezone

from crm.db.raw import pg_int_array
from crm.models import PurchaseItem
from offers.catalog import Catalog, ProductInfo
from offers.models import ProductStrategy

# A client's purchase items: (product id, purchased at as Unix seconds), oldest first.
History = Sequence[tuple[int, int]]
# The part of it a strategy may use (``StrategyInput.usable_history``), with catalog rows.
Usable = Sequence[tuple[ProductInfo, int]]
DAY = 86400

DEFAULT_REASONS: dict[str, str] = {
    ProductStrategy.FIXED: "Мы подобрали это предложение специально для вас.",
    ProductStrategy.REPLENISH: (
        "Вы покупали «{{ fact.product }}» {{ fact.days_since }} "
        "{{ fact.days_since|ru_plural:'день,дня,дней' }} назад, а обычно берёте раз в "
        "{{ fact.interval_days }} {{ fact.interval_days|ru_plural:'день,дня,дней' }}."
    ),
    ProductStrategy.CROSS_SELL: (
        "Вы недавно купили «{{ fact.product }}» — к этой покупке пригодится «{{ product.name }}»."
    ),
    ProductStrategy.SAME_BRAND: (
        "Вы выбираете {{ fact.brand }} — у бренда есть для вас ещё кое-что."
    ),
    ProductStrategy.OWN_BRAND: (
        "Вы покупаете «{{ fact.product }}» — попробуйте наш бренд в той же категории: "
        "«{{ product.name }}»."
    ),
    ProductStrategy.NEW_ARRIVALS: "Новинки в категории «{{ fact.category }}», которую вы любите.",
}
ASSOCIATION_REASON = (
    "Вместе с товарами категории «{{ fact.category }}» часто покупают {{ fact.target|lower }}."
)
# Said instead when the fact behind the choice is sensitive: nothing about it is spoken.
NEUTRAL_REASON = "Мы подобрали это предложение специально для вас."


@dataclass(frozen=True, slots=True)
class CrossSellSpec:
    """A cross-sell rule or an accepted mined association, flattened for the engine."""

    source_product: int | None
    source_category: int | None
    target_product: int | None
    target_category: int | None
    reason: str
    priority: int
    weight: float = 1.0  # lift for mined associations
    mined: bool = False


@dataclass
class Choice:
    products: list[int]
    fact: dict[str, Any]
    score: float
    reason_template: str = ""
    sensitive_fact: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class StrategyInput:
    offer: Any  # offers.models.Offer (settings only are read)
    catalog: Catalog
    at: dt.datetime
    cross_sell: Sequence[CrossSellSpec] = ()
    product_ok: Callable[[ProductInfo], bool] = lambda p: True  # the margin guard
    fixed_products: Sequence[int] = ()

    @property
    def limit(self) -> int:
        return max(1, int(self.offer.products_per_message))

    def __post_init__(self) -> None:
        self.at_ts = int(self.at.timestamp())
        offset = self.at.astimezone(timezone.get_default_timezone()).utcoffset()
        self.day_offset = int(offset.total_seconds()) if offset else 0
        # The offer's category, for strategies other than "fixed", limits what is proposed.
        scope = self.offer.fixed_category_id
        self.scope = (
            self.catalog.subtree(scope)
            if scope and self.offer.strategy != ProductStrategy.FIXED
            else None
        )

    def offerable(self, product: ProductInfo | None) -> bool:
        return (
            product is not None
            and product.offerable
            and (self.offer.allow_sensitive or not product.sensitive)
            and (self.scope is None or product.category_id in self.scope)
            and self.product_ok(product)
        )

    def days_ago(self, ts: int) -> int:
        return max(0, (self.at_ts - ts) // DAY)

    def local_day(self, ts: int) -> int:
        return (ts + self.day_offset) // DAY

    def local_date(self, ts: int) -> dt.date:
        return dt.datetime.fromtimestamp(ts, tz=timezone.get_default_timezone()).date()

    @property
    def history_key(self) -> tuple[int, bool]:
        """Offers with the same key see the same usable history (computed once per client)."""
        return int(self.offer.lookback_days), bool(self.offer.allow_sensitive)

    def usable_history(self, history: History) -> list[tuple[ProductInfo, int]]:
        """The history within the window, without sensitive purchases unless allowed."""
        since = self.at_ts - int(self.offer.lookback_days) * DAY
        at_ts = self.at_ts
        products = self.catalog.products
        allow_sensitive = self.offer.allow_sensitive
        out = []
        for product_id, when in history:
            if when < since or when > at_ts:
                continue
            product = products.get(product_id)
            if product is None or (product.sensitive and not allow_sensitive):
                continue
            out.append((product, when))
        return out

    def pick(self, candidates: Sequence[int], *, exclude: set[int] = frozenset()) -> list[int]:  # type: ignore[assignment]
        out = []
        for pid in candidates:
            if pid in exclude or pid in out:
                continue
            if self.offerable(self.catalog.products.get(pid)):
                out.append(pid)
                if len(out) >= self.limit:
                    break
        return out


# Strategies -----------------------------------------------------------------------------------


def fixed(inp: StrategyInput, usable: Usable) -> Choice | None:
    candidates = list(inp.fixed_products)
    if inp.offer.fixed_category_id:
        candidates += inp.catalog.offerable_in(inp.offer.fixed_category_id)
    products = inp.pick(candidates)
    if not products:
        return None
    first = inp.catalog.products[products[0]]
    fact = {"product": first.name, "category": inp.catalog.category_name(first.category_id)}
    return Choice(products, fact, 0.3, sensitive_fact=first.sensitive)


def replenish(inp: StrategyInput, usable: Usable) -> Choice | None:
    """The client's regular product due now: the median interval between their purchase days
    in its category (three purchases at least) has about run out since the last one."""
    by_category: dict[int, list[tuple[ProductInfo, int]]] = {}
    scope = inp.scope
    for pair in usable:  # oldest first
        category_id = pair[0].category_id
        if scope is not None and category_id not in scope:
            continue
        group = by_category.get(category_id)
        if group is None:
            by_category[category_id] = [pair]
        else:
            group.append(pair)
    lead = int(inp.offer.replenish_lead_days)
    offset = inp.day_offset
    best: tuple[float, Choice] | None = None
    for category_id, bought in by_category.items():
        if len(bought) < 3:
            continue
        days: list[int] = []
        for _p, when in bought:
            day = (when + offset) // DAY
            if not days or day != days[-1]:
                days.append(day)
        if len(days) < 3:
            continue
        gaps = sorted(b - a for a, b in zip(days, days[1:], strict=False))
        half = len(gaps) // 2
        interval = gaps[half] if len(gaps) % 2 else (gaps[half - 1] + gaps[half]) / 2
        if interval < 3:
            continue
        last_when = bought[-1][1]
        since = inp.days_ago(last_when)
        if not (interval - lead <= since <= interval * 2):
            continue
        # The regular product: bought most often; of equals, the one bought last.
        counts: dict[int, int] = {}
        for product, _w in bought:
            counts[product.id] = counts.get(product.id, 0) + 1
        top = max(counts.values())
        regular_id = next(p.id for p, _w in reversed(bought) if counts[p.id] == top)
        regular = inp.catalog.products[regular_id]
        products = inp.pick([regular_id, *inp.catalog.offerable_in(category_id)])
        if not products:
            continue
        closeness = max(0.0, 1 - abs(since - interval) / max(interval, 1))
        score = 0.4 + 0.6 * closeness
        choice = Choice(
            products,
            {
                "product": regular.name,
                "category": inp.catalog.category_name(category_id),
                "brand": regular.brand,
                "days_since": since,
                "interval_days": round(interval),
                "last_date": inp.local_date(last_when),
                "count": len(days),
            },
            score,
            sensitive_fact=regular.sensitive,
        )
        if best is None or score > best[0]:
            best = (score, choice)
    return best[1] if best else None


def cross_sell(inp: StrategyInput, usable: Usable) -> Choice | None:
    """A complement of a recent purchase, from the marketer's rules and accepted associations;
    never something of the target kind the client already bought within the window."""
    if not usable or not inp.cross_sell:
        return None
    bought_ids = {p.id for p, _w in usable}
    bought_categories = {p.category_id for p, _w in usable}
    recent_since = inp.at_ts - int(inp.offer.recent_days) * DAY
    catalog = inp.catalog
    best: tuple[tuple[float, ...], Choice] | None = None
    for product, when in sorted(usable, key=lambda pw: pw[1], reverse=True):
        if when < recent_since:
            break
        ancestors = catalog.categories[product.category_id].ancestor_set
        since = inp.days_ago(when)
        recency = math.exp(-since / max(int(inp.offer.recent_days), 1))
        for spec in inp.cross_sell:
            if spec.source_product is not None and spec.source_product != product.id:
                continue
            if spec.source_category is not None and spec.source_category not in ancestors:
                continue
            if spec.target_product is not None:
                target_name = catalog.products[spec.target_product].name
                if spec.target_product in bought_ids:
                    continue
                candidates = [spec.target_product]
            else:
                target = spec.target_category
                assert target is not None
                if bought_categories & catalog.subtree(target):
                    continue
                target_name = catalog.category_name(target)
                candidates = catalog.offerable_in(target)
            products = inp.pick(candidates, exclude=bought_ids)
            if not products:
                continue
            score = min(1.0, (0.5 + 0.5 * recency) * (1 + 0.1 * min(spec.weight, 5)) / 1.5)
            rank = (spec.priority, score)
            if best is not None and rank <= best[0]:
                continue
            fact = {
                "product": product.name,
                "category": catalog.category_name(product.category_id),
                "brand": product.brand,
                "days_since": since,
                "last_date": inp.local_date(when),
                "target": target_name,
            }
            reason = spec.reason or (ASSOCIATION_REASON if spec.mined else "")
            chosen = Choice(
                products,
                fact,
                score,
                reason_template=reason,
                sensitive_fact=product.sensitive,
                extra={"mined": spec.mined},
            )
            best = (rank, chosen)
    return best[1] if best else None


def same_brand(inp: StrategyInput, usable: Usable) -> Choice | None:
    counts = Counter(p.brand_id for p, _w in usable if p.brand_id is not None)
    if not counts:
        return None
    bought_ids = {p.id for p, _w in usable}
    new_since = inp.at - dt.timedelta(days=int(inp.offer.recent_days))
    for brand_id, count in counts.most_common():
        ranked = sorted(
            inp.catalog.by_brand.get(brand_id, ()),
            key=lambda pid: (inp.catalog.products[pid].created_at < new_since,),
        )
        products = inp.pick(ranked, exclude=bought_ids)
        if not products:
            continue
        last = max((pw for pw in usable if pw[0].brand_id == brand_id), key=lambda pw: pw[1])
        fact = {
            "brand": last[0].brand,
            "product": last[0].name,
            "category": inp.catalog.category_name(last[0].category_id),
            "count": count,
            "days_since": inp.days_ago(last[1]),
        }
        score = min(1.0, 0.3 + 0.1 * count)
        return Choice(products, fact, score, sensitive_fact=last[0].sensitive)
    return None


def own_brand(inp: StrategyInput, usable: Usable) -> Choice | None:
    """The private-label alternative in a category the client buys other brands in (and has
    not tried ours), cheaper than their usual product when there is one."""
    by_category: dict[int, list[ProductInfo]] = defaultdict(list)
    for product, _when in usable:
        by_category[product.category_id].append(product)
    ranked = sorted(by_category.items(), key=lambda kv: -len(kv[1]))
    for category_id, bought in ranked:
        if any(p.private_label for p in bought):
            continue
        usual = Counter(p.id for p in bought).most_common(1)[0][0]
        usual_product = inp.catalog.products[usual]
        own = [
            pid
            for pid in inp.catalog.by_category.get(category_id, ())
            if inp.catalog.products[pid].private_label
        ]
        cheaper = [pid for pid in own if inp.catalog.products[pid].price <= usual_product.price]
        products = inp.pick(cheaper + own)
        if not products:
            continue
        fact = {
            "product": usual_product.name,
            "brand": usual_product.brand,
            "category": inp.catalog.category_name(category_id),
            "count": len(bought),
        }
        score = min(1.0, 0.3 + 0.1 * len(bought))
        return Choice(products, fact, score, sensitive_fact=usual_product.sensitive)
    return None


def new_arrivals(inp: StrategyInput, usable: Usable) -> Choice | None:
    """New products (created within the offer's 'recent' days) in the client's favourite
    category, else in its parent category."""
    counts = Counter(p.category_id for p, _w in usable)
    if not counts:
        return None
    bought_ids = {p.id for p, _w in usable}
    since = inp.at - dt.timedelta(days=int(inp.offer.recent_days))
    catalog = inp.catalog
    for category_id, count in counts.most_common(3):
        scopes = [category_id]
        ancestors = catalog.categories[category_id].ancestors
        if len(ancestors) > 1:
            scopes.append(ancestors[-2])
        for scope in scopes:
            fresh = [
                pid
                for pid in catalog.offerable_in(scope)
                if catalog.products[pid].created_at >= since
            ]
            products = inp.pick(fresh, exclude=bought_ids)
            if products:
                fact = {"category": catalog.category_name(scope), "count": count}
                sensitive = catalog.categories[scope].sensitive
                return Choice(
                    products, fact, min(1.0, 0.3 + 0.05 * count), sensitive_fact=sensitive
                )
    return None


STRATEGIES: dict[str, Callable[[StrategyInput, Usable], Choice | None]] = {
    ProductStrategy.FIXED: fixed,
    ProductStrategy.REPLENISH: replenish,
    ProductStrategy.CROSS_SELL: cross_sell,
    ProductStrategy.SAME_BRAND: same_brand,
    ProductStrategy.OWN_BRAND: own_brand,
    ProductStrategy.NEW_ARRIVALS: new_arrivals,
}


# Set-based forms ------------------------------------------------------------------------------
#
# The same decisions as ``replenish`` and ``cross_sell``, for a whole batch of clients at once:
# the database computes the per-client statistics (purchase days, median interval, last
# purchase, recent purchases that trigger a rule) and returns only the rows that can lead to a
# proposal, so Python touches the clients who get one, not every client of the batch. One query
# each, whatever the batch size; the same SQL on PostgreSQL and SQLite but for the epoch and
# the array parameters.

ManyStrategy = Callable[[StrategyInput, Sequence[int]], dict[int, Choice]]
# Up to this product id, PostgreSQL reads a product's category from an array indexed by id.
DENSE_CATEGORY_ARRAY_MAX = 200_000


def sql_ids(column: str, ids: Sequence[int]) -> tuple[str, list[Any]]:
    """``column IN (ids)`` with the ids as one parameter (an array or JSON)."""
    if connection.vendor == "postgresql":
        return f"{column} = ANY(%s::bigint[])", [pg_int_array(ids)]
    return f"{column} IN (SELECT value FROM json_each(%s))", [json.dumps([int(i) for i in ids])]


def _sql_epoch(column: str) -> str:
    """Unix seconds of a datetime column, as the engine has always read them: on PostgreSQL
    ``EXTRACT(EPOCH ..)::bigint``, rounded half up, but through the float ``date_part``, which
    costs a third of the numeric ``EXTRACT`` (exact for instants after 1970: the float is
    within a microsecond of the true value, so the rounding never crosses a half second)."""
    if connection.vendor == "postgresql":
        return f"floor(date_part('epoch', {column}) + 0.5)::bigint"
    return f"CAST(strftime('%%s', {column}) AS INTEGER)"


def _from_epoch(seconds: float) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=seconds)


def _window(inp: StrategyInput, days: int) -> tuple[dt.datetime, dt.datetime, int, int]:
    """Datetime bounds (for the index, a second wider) and exact Unix-second bounds of the
    last ``days`` days, the same as ``usable_history`` applies."""
    since_ts = inp.at_ts - int(days) * DAY
    return inp.at - dt.timedelta(days=int(days), seconds=1), inp.at, since_ts, inp.at_ts


def _usable_products(inp: StrategyInput, *, scoped: bool) -> list[ProductInfo]:
    """Catalog products whose purchases the strategy may read."""
    allow = inp.offer.allow_sensitive
    scope = inp.scope if scoped else None
    return [
        p
        for p in inp.catalog.products.values()
        if (allow or not p.sensitive) and (scope is None or p.category_id in scope)
    ]


def replenish_many(inp: StrategyInput, client_ids: Sequence[int]) -> dict[int, Choice]:
    """``replenish`` for a batch: one query returns, per client and category (within the
    offer's category) where a refill is due now, the number of purchase days, the median
    interval between them, the last purchase and the products bought there in order (for the
    regular product); the pick and the score stay here."""
    products = _usable_products(inp, scoped=True)
    if not products or not client_ids:
        return {}
    if connection.vendor == "postgresql":
        groups = _replenish_due_postgresql(inp, client_ids, products)
    else:
        groups = _replenish_due_generic(inp, client_ids, products)

    catalog = inp.catalog
    picks: dict[tuple[int, int], list[int]] = {}
    best: dict[int, tuple[float, Choice]] = {}
    # Per client, the categories come in the order of the client's first purchase there.
    for client_id, category_id, days, median, last_ts, since_days, bought in groups:
        # The regular product: bought most often; of equals, the one bought last.
        counts: dict[int, int] = {}
        for product_id in bought:
            counts[product_id] = counts.get(product_id, 0) + 1
        top = max(counts.values())
        regular_id = next(pid for pid in reversed(bought) if counts[pid] == top)
        key = (regular_id, category_id)
        chosen = picks.get(key)
        if chosen is None:
            chosen = picks[key] = inp.pick([regular_id, *catalog.offerable_in(category_id)])
        if not chosen:
            continue
        interval = float(median)
        since_days = max(0, int(since_days))
        closeness = max(0.0, 1 - abs(since_days - interval) / max(interval, 1))
        score = 0.4 + 0.6 * closeness
        current = best.get(client_id)
        if current is not None and score <= current[0]:
            continue
        regular = catalog.products[regular_id]
        fact = {
            "product": regular.name,
            "category": catalog.category_name(category_id),
            "brand": regular.brand,
            "days_since": since_days,
            "interval_days": round(interval),
            "last_date": inp.local_date(int(last_ts)),
            "count": int(days),
        }
        best[client_id] = (
            score,
            Choice(list(chosen), fact, score, sensitive_fact=regular.sensitive),
        )
    return {client_id: choice for client_id, (_s, choice) in best.items()}


# (client, category, purchase days, median interval, last purchase (Unix s), days since it,
#  product ids bought in the category, oldest first)
DueGroup = tuple[int, int, int, float, int, int, list[int]]

# Shared by both forms: a purchase's distance in local days to the client's previous purchase
# in the category; the non-zero distances are the gaps between purchase days. ``due`` keeps the
# categories with three purchase days or more whose median gap (3 days or more) has about run
# out: lead days before it at the earliest, twice it at the latest.
_DUE = f"""
    steps AS (
        SELECT client_id, category_id, product_id, ts,
               NULLIF((ts + %(offset)s) / {DAY} - LAG((ts + %(offset)s) / {DAY}) OVER (
                   PARTITION BY client_id, category_id ORDER BY ts
               ), 0) AS gap
        FROM items
    ),
    {{ranked}},
    stats AS (
        SELECT client_id, category_id, COUNT(gap) + 1 AS days, {{median}} AS median,
               MAX(ts) AS last_ts, MIN(ts) AS first_ts {{bought}}
        FROM ranked GROUP BY client_id, category_id HAVING COUNT(gap) >= 2
    ),
    due AS (
        SELECT *, (%(at)s - last_ts) / {DAY} AS since
        FROM stats
        WHERE median >= 3
          AND (%(at)s - last_ts) / {DAY} >= median - %(lead)s
          AND (%(at)s - last_ts) / {DAY} <= median * 2
    )
"""


def _replenish_params(inp: StrategyInput) -> dict[str, Any]:
    since, until, since_ts, at_ts = _window(inp, int(inp.offer.lookback_days))
    return {
        "since": since,
        "until": until,
        "since_ts": since_ts,
        "at": at_ts,
        "offset": inp.day_offset,
        "lead": int(inp.offer.replenish_lead_days),
    }


def _replenish_due_postgresql(
    inp: StrategyInput, client_ids: Sequence[int], products: Sequence[ProductInfo]
) -> list[DueGroup]:
    """PostgreSQL: the batch's items come from the covering (client, time, product) index
    already ordered by client, the category is read from an array indexed by product id (so
    the order survives and the window only sorts each client's few rows), the median is
    ``percentile_cont`` and the products come back as one array per category."""
    params = {
        **_replenish_params(inp),
        "clients": pg_int_array(client_ids),
    }
    top = max(p.id for p in products)
    if top <= DENSE_CATEGORY_ARRAY_MAX:
        # PostgreSQL arrays count from 1: element ``id`` is the category of product ``id``.
        categories: list[int | None] = [None] * top
        for p in products:
            categories[p.id - 1] = p.category_id
        params["categories"] = (
            "{" + ",".join("NULL" if c is None else str(c) for c in categories) + "}"
        )
        category = "(%(categories)s::bigint[])[i.product_id]"
        mapping = ""
    else:  # a very large catalog: a join, at the price of a sort
        params["pids"] = "{" + ",".join(str(p.id) for p in products) + "}"
        params["cats"] = "{" + ",".join(str(p.category_id) for p in products) + "}"
        category = "m.category_id"
        mapping = (
            "JOIN unnest(%(pids)s::bigint[], %(cats)s::bigint[]) AS m(product_id, category_id)"
            " ON m.product_id = i.product_id"
        )
    table = PurchaseItem._meta.db_table
    due = _DUE.format(
        ranked="ranked AS (SELECT * FROM steps)",
        median="percentile_cont(0.5) WITHIN GROUP (ORDER BY gap)",
        # Unordered (cheaper); the times come along to order them by.
        bought=", array_agg(product_id) AS bought, array_agg(ts) AS bought_ts",
    )
    # The Unix-second bounds as datetimes (a rounded second is in the window when the instant
    # is within half a second of it), so no row's epoch is computed to filter it.
    params["since_exact"] = _from_epoch(params["since_ts"] - 0.5)
    params["until_exact"] = _from_epoch(params["at"] + 0.5)
    epoch = _sql_epoch("i.purchased_at")
    sql = f"""
        WITH items AS (
            SELECT i.client_id, i.product_id, {epoch} AS ts, {category} AS category_id
            FROM {table} i {mapping}
            WHERE i.client_id = ANY(%(clients)s::bigint[])
              AND i.purchased_at >= %(since)s AND i.purchased_at <= %(until)s
              AND i.purchased_at >= %(since_exact)s AND i.purchased_at < %(until_exact)s
              AND {category} IS NOT NULL
        ),
        {due}
        SELECT client_id, category_id, days, median, last_ts, since, bought, bought_ts
        FROM due ORDER BY client_id, first_ts, category_id
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [
        (*row[:6], [pid for _ts, pid in sorted(zip(row[7], row[6], strict=True))]) for row in rows
    ]


def _replenish_due_generic(
    inp: StrategyInput, client_ids: Sequence[int], products: Sequence[ProductInfo]
) -> list[DueGroup]:
    """SQLite (and the reference form): the catalog's (product, category) pairs as a JSON
    relation, the median as the mean of the middle one or two gaps by row number, and the
    products of each due category joined back, one row each."""
    params = {
        **_replenish_params(inp),
        "clients": json.dumps([int(i) for i in client_ids]),
        "pairs": json.dumps([[p.id, p.category_id] for p in products]),
    }
    table = PurchaseItem._meta.db_table
    due = _DUE.format(
        # Rows without a gap (the first purchase, same-day ones) sort last.
        ranked=(
            "ranked AS (SELECT *, ROW_NUMBER() OVER (PARTITION BY client_id, category_id"
            " ORDER BY CASE WHEN gap IS NULL THEN 1 ELSE 0 END, gap) AS rn,"
            " COUNT(gap) OVER (PARTITION BY client_id, category_id) AS n FROM steps)"
        ),
        median=(
            "AVG(CASE WHEN gap IS NOT NULL AND (rn = (n + 1) / 2 OR rn = (n + 2) / 2)"
            " THEN CAST(gap AS REAL) END)"
        ),
        bought="",
    )
    sql = f"""
        WITH pairs AS (
            SELECT json_extract(value, '$[0]') AS product_id,
                   json_extract(value, '$[1]') AS category_id
            FROM json_each(%(pairs)s)
        ),
        items AS (
            SELECT i.client_id, i.product_id, m.category_id,
                   CAST(strftime('%%s', i.purchased_at) AS INTEGER) AS ts
            FROM {table} i JOIN pairs m ON m.product_id = i.product_id
            WHERE i.client_id IN (SELECT value FROM json_each(%(clients)s))
              AND i.purchased_at >= %(since)s AND i.purchased_at <= %(until)s
              AND CAST(strftime('%%s', i.purchased_at) AS INTEGER) >= %(since_ts)s
              AND CAST(strftime('%%s', i.purchased_at) AS INTEGER) <= %(at)s
        ),
        {due}
        SELECT d.client_id, d.category_id, d.days, d.median, d.last_ts, d.since, i.product_id
        FROM due d JOIN items i ON i.client_id = d.client_id AND i.category_id = d.category_id
        ORDER BY d.client_id, d.first_ts, d.category_id, i.ts, i.product_id
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    groups: dict[tuple[int, int], DueGroup] = {}
    for client_id, category_id, days, median, last_ts, since, product_id in rows:
        group = groups.get((client_id, category_id))
        if group is None:
            group = (client_id, category_id, days, median, last_ts, since, [])
            groups[(client_id, category_id)] = group
        group[6].append(product_id)
    return list(groups.values())


def cross_sell_many(inp: StrategyInput, client_ids: Sequence[int]) -> dict[int, Choice]:
    """``cross_sell`` for a batch: one query returns each client's recent purchases that some
    rule starts from (newest first) and, for those clients only, what they bought within the
    window among the rules' targets; the matching and the ranking stay here."""
    specs = list(inp.cross_sell)
    if not specs or not client_ids:
        return {}
    catalog = inp.catalog
    usable = _usable_products(inp, scoped=False)
    sources = [
        p.id
        for p in usable
        if any(_starts(spec, p, catalog.categories[p.category_id].ancestor_set) for spec in specs)
    ]
    if not sources:
        return {}
    target_categories: set[int] = set()
    for spec in specs:
        if spec.target_product is None and spec.target_category is not None:
            target_categories |= catalog.subtree(spec.target_category)
    target_products = {s.target_product for s in specs if s.target_product is not None}
    targets = sorted(
        {p.id for p in usable if p.id in target_products or p.category_id in target_categories}
    )
    table = PurchaseItem._meta.db_table
    recent_days = int(inp.offer.recent_days)
    lookback = int(inp.offer.lookback_days)
    r_since, until, r_since_ts, at_ts = _window(inp, min(recent_days, lookback))
    since, _until, since_ts, _at = _window(inp, lookback)
    clients_sql, clients_params = sql_ids("i.client_id", client_ids)
    sources_sql, sources_params = sql_ids("i.product_id", sources)
    targets_sql, targets_params = sql_ids("i.product_id", targets or [0])
    epoch = _sql_epoch("i.purchased_at")
    sql = f"""
        WITH recent AS (
            SELECT i.client_id, i.product_id, i.purchased_at, {epoch} AS ts
            FROM {table} i
            WHERE {clients_sql} AND {sources_sql}
              AND i.purchased_at >= %s AND i.purchased_at <= %s
        ),
        triggers AS (
            SELECT * FROM recent WHERE ts >= %s AND ts >= %s AND ts <= %s
        )
        SELECT 0, client_id, product_id, ts, purchased_at FROM triggers
        UNION ALL
        SELECT 1, i.client_id, i.product_id, 0, MIN(i.purchased_at)
        FROM {table} i
        WHERE i.client_id IN (SELECT client_id FROM triggers) AND {targets_sql}
          AND i.purchased_at >= %s AND i.purchased_at <= %s
          AND {epoch} >= %s AND {epoch} <= %s
        GROUP BY i.client_id, i.product_id
        ORDER BY 2, 1, 4 DESC, 5, 3
    """
    params = [
        *clients_params,
        *sources_params,
        r_since,
        until,
        r_since_ts,
        since_ts,
        at_ts,
        *targets_params,
        since,
        until,
        since_ts,
        at_ts,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()

    recent: dict[int, list[tuple[int, int]]] = {}
    owned: dict[int, set[int]] = {}
    for kind, client_id, product_id, ts, _at in rows:
        if kind == 0:
            recent.setdefault(client_id, []).append((product_id, int(ts)))
        else:
            owned.setdefault(client_id, set()).add(product_id)
    picks: dict[int, list[int]] = {}
    out: dict[int, Choice] = {}
    for client_id, triggers in recent.items():
        bought = owned.get(client_id, set())
        bought_categories = {catalog.products[pid].category_id for pid in bought}
        choice = _cross_sell_choice(inp, specs, triggers, bought, bought_categories, picks)
        if choice is not None:
            out[client_id] = choice
    return out


def _starts(spec: CrossSellSpec, product: ProductInfo, ancestors: frozenset[int]) -> bool:
    """Whether a purchase of ``product`` triggers the rule."""
    return (spec.source_product is None or spec.source_product == product.id) and (
        spec.source_category is None or spec.source_category in ancestors
    )


def _cross_sell_choice(
    inp: StrategyInput,
    specs: Sequence[CrossSellSpec],
    triggers: Sequence[tuple[int, int]],
    bought: set[int],
    bought_categories: set[int],
    picks: dict[int, list[int]],
) -> Choice | None:
    """``cross_sell``'s ranking over a client's recent triggering purchases (newest first),
    given what the client bought among the targets. A rule's pick does not depend on the
    client (a target already bought disqualifies the rule), so it is computed once."""
    catalog = inp.catalog
    recent_days = max(int(inp.offer.recent_days), 1)
    best: tuple[tuple[float, ...], Choice] | None = None
    for product_id, when in triggers:
        product = catalog.products[product_id]
        ancestors = catalog.categories[product.category_id].ancestor_set
        since = inp.days_ago(when)
        recency = math.exp(-since / recent_days)
        for index, spec in enumerate(specs):
            if not _starts(spec, product, ancestors):
                continue
            if spec.target_product is not None:
                if spec.target_product in bought:
                    continue
                target_name = catalog.products[spec.target_product].name
            else:
                target = spec.target_category
                assert target is not None
                if bought_categories & catalog.subtree(target):
                    continue
                target_name = catalog.category_name(target)
            products = picks.get(index)
            if products is None:
                if spec.target_product is not None:
                    candidates = [spec.target_product]
                else:
                    assert spec.target_category is not None
                    candidates = catalog.offerable_in(spec.target_category)
                products = picks[index] = inp.pick(candidates)
            if not products:
                continue
            score = min(1.0, (0.5 + 0.5 * recency) * (1 + 0.1 * min(spec.weight, 5)) / 1.5)
            rank = (spec.priority, score)
            if best is not None and rank <= best[0]:
                continue
            fact = {
                "product": product.name,
                "category": catalog.category_name(product.category_id),
                "brand": product.brand,
                "days_since": since,
                "last_date": inp.local_date(when),
                "target": target_name,
            }
            reason = spec.reason or (ASSOCIATION_REASON if spec.mined else "")
            best = (
                rank,
                Choice(
                    list(products),
                    fact,
                    score,
                    reason_template=reason,
                    sensitive_fact=product.sensitive,
                    extra={"mined": spec.mined},
                ),
            )
    return best[1] if best else None


SET_BASED: dict[str, ManyStrategy] = {
    ProductStrategy.REPLENISH: replenish_many,
    ProductStrategy.CROSS_SELL: cross_sell_many,
}
