"""Product strategies: for one client's purchase history, which products and which fact.

Each strategy is a pure function of the client's history (``(product id, purchased at)`` pairs,
oldest first), the catalog snapshot and the offer's settings; the engine loads all of those for a
whole batch in a bounded number of queries. A strategy returns a ``Choice`` (products, the fact
that explains them, a propensity score in [0, 1]) or None when it has nothing for the client.

Products are offerable only (in stock and active), never from a sensitive category unless the
offer allows it, and never below the offer's margin guard. History in sensitive categories is not
used at all unless the offer allows sensitive products, and even then its facts are not spoken.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from offers.catalog import Catalog, ProductInfo
from offers.models import ProductStrategy

# A client's purchase items: (product id, purchased at as Unix seconds), oldest first.
History = Sequence[tuple[int, int]]
# The part of it a strategy may use (``StrategyInput.usable_history``), with catalog rows.
Usable = Sequence[tuple[ProductInfo, int]]
DAY = 86400

DEFAULT_REASONS = {
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
