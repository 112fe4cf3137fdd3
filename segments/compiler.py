"""Rule tree -> one queryset over ``crm.Client``.

Each rule becomes a condition on the client row: a plain column test, a correlated
``EXISTS`` over one related table (``client_id`` indexes serve it, and PostgreSQL turns a
top-level ``EXISTS`` into a semi-join), or an ``EXISTS`` over a grouped derived table for
aggregates (count, spend, average), which PostgreSQL runs as one hash aggregate. Groups combine
with AND / OR / NOT. Negation is the set complement: NOT (age >= 30) includes clients without a
birth date. Anonymized clients are never in a segment.

Times: "the last N days/hours" is a rolling window back from ``now``; dates are local dates in
``settings.TIME_ZONE``, turned into aware bounds here, so SQLite and PostgreSQL compare the same
instants. Nothing here loops over clients; the only queries made while compiling load the rules
of segments referred to by a "member of segment" rule.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import (
    Avg,
    BooleanField,
    Count,
    Exists,
    Expression,
    F,
    OuterRef,
    Q,
    QuerySet,
    Sum,
)
from django.db.models.functions import StrIndex
from django.db.models.lookups import StartsWith
from django.utils import timezone

from crm.models import Category, Child, Client, Consent, Event, Pet, Product, Purchase, PurchaseItem
from loyalty.models import LoyaltyAccount
from segments.catalog import FIELDS


class CompileError(Exception):
    pass


@dataclass
class Context:
    now: dt.datetime
    tz: dt.tzinfo
    today: dt.date
    stack: tuple[int, ...] = ()  # segments being compiled, for cycle safety
    alias: list[int] = field(default_factory=lambda: [0])
    # Inside an AND group with other (non-aggregate) conditions: few clients reach aggregates.
    narrowed: bool = False
    # Alternatives may become a union of client ids (not under a NOT: NOT IN is no anti-join).
    union: bool = True
    # Inside an AND group with conditions on the client row: long purchase windows are probed
    # per client (see _bought).
    by_row: bool = False

    def start_of(self, day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(0), tzinfo=self.tz)

    def next_alias(self) -> str:
        self.alias[0] += 1
        return f"seg_g{self.alias[0]}"


def make_context(now: dt.datetime | None = None) -> Context:
    now = now or timezone.now()
    tz = timezone.get_default_timezone()
    return Context(now=now, tz=tz, today=timezone.localtime(now, tz).date())


@contextmanager
def analytic_session() -> Iterator[None]:
    """Run segment queries without PostgreSQL's JIT: compiling a plan with many subqueries
    costs a second or more, far longer than running it with the indexes these queries use."""
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL jit = off")
        yield


def base_queryset() -> QuerySet[Client]:
    return Client.objects.filter(is_anonymized=False)


def compile_rules(
    tree: dict[str, Any], *, now: dt.datetime | None = None, segment_id: int | None = None
) -> QuerySet[Client]:
    """The clients matching a validated rule tree, as one queryset."""
    ctx = make_context(now)
    if segment_id is not None:
        ctx.stack = (segment_id,)
    return base_queryset().filter(compile_condition(tree, ctx))


# At most this many alternatives once ANDs are distributed over ORs (see _alternatives).
MAX_ALTERNATIVES = 8


def compile_condition(tree: dict[str, Any], ctx: Context) -> Q:
    node = negation_normal_form(tree)
    if ctx.union:
        alternatives = _disjuncts(node, MAX_ALTERNATIVES)
        if alternatives is not None and len(alternatives) > 1:
            return _alternatives(alternatives, ctx)
    return _node(node, ctx)


# A negated rule with one of these operators is the same rule with the other operator: the
# complement without a NOT around a subquery.
INVERSE = {
    "yes": "no",
    "no": "yes",
    "any_of": "none_of",
    "none_of": "any_of",
    "in": "not_in",
    "not_in": "in",
    "exists": "not_exists",
    "not_exists": "exists",
    "is_empty": "is_not_empty",
    "is_not_empty": "is_empty",
}


def negation_normal_form(node: dict[str, Any], negate: bool = False) -> dict[str, Any]:
    """Push NOTs down to the rules (De Morgan), and into the rules' operators where one is the
    other's complement. PostgreSQL turns EXISTS / NOT EXISTS into semi- and anti-joins only
    when they stand in a plain AND, not under NOT (... OR ...); the planner's own De Morgan
    comes after that step. The set of clients is the same."""
    negate = negate != bool(node.get("negate"))
    if "field" in node:
        spec = FIELDS.get(node["field"])
        inverse = INVERSE.get(node.get("operator", ""))
        if negate and spec is not None and inverse in spec.operators:
            return {**node, "operator": inverse, "negate": False}
        return {**node, "negate": negate}
    children = node.get("rules", [])
    if not children:
        return {"match": node.get("match", "all"), "negate": negate, "rules": []}
    match = node.get("match", "all")
    if negate:
        match = "any" if match == "all" else "all"
    return {
        "match": match,
        "negate": False,
        "rules": [negation_normal_form(child, negate) for child in children],
    }


# Tree ---------------------------------------------------------------------------------------------

_EVERYONE = Q(pk__isnull=False)  # an empty group; unlike Q(), it survives OR and NOT
_NOTHING = Q(pk__in=[])


# Fields whose rules test the client row only (no subquery).
ROW_FIELDS = {
    "age",
    "gender",
    "city",
    "region",
    "time_zone",
    "family_status",
    "occupation",
    "education",
    "source",
    "preferred_channel",
    "attribute",
    "created",
    "birthday",
}


def _row_local(node: dict[str, Any]) -> bool:
    if "field" in node:
        return node["field"] in ROW_FIELDS
    return all(_row_local(child) for child in node.get("rules", []))


def _disjuncts(node: dict[str, Any], limit: int) -> list[list[dict[str, Any]]] | None:
    """A tree in negation normal form as alternatives (OR) of conjunctions (AND) of atoms: the
    rules, and groups that test the client row only, kept whole. None past ``limit``."""
    if "field" in node or _row_local(node):
        return [[node]]
    out: list[list[dict[str, Any]]]
    if node.get("match", "all") == "any":
        out = []
        for child in node["rules"]:
            sub = _disjuncts(child, limit)
            if sub is None:
                return None
            out.extend(sub)
            if len(out) > limit:
                return None
        return out
    out = [[]]
    for child in node["rules"]:
        sub = _disjuncts(child, limit)
        if sub is None:
            return None
        out = [left + right for left in out for right in sub]
        if len(out) > limit:
            return None
    return out


def _alternatives(alternatives: list[list[dict[str, Any]]], ctx: Context) -> Q:
    """``A AND (B OR C)`` as ``(A AND B) UNION (A AND C)``: each alternative is a plain AND,
    which PostgreSQL plans as joins from the tables' own statistics (it has none for a union's
    output, so conditions left outside a union would be probed once per id it returns)."""
    local = [alt for alt in alternatives if all(_row_local(atom) for atom in alt)]
    other = [alt for alt in alternatives if not all(_row_local(atom) for atom in alt)]
    row_q = _or([_node({"match": "all", "rules": alt}, ctx) for alt in local])
    return _any_of(row_q, [_branch({"match": "all", "rules": alt}, ctx) for alt in other])


def _node(node: dict[str, Any], ctx: Context) -> Q:
    if "field" in node:
        q = _rule(node, ctx)
    else:
        children = node.get("rules", [])
        if not children:
            q = _EVERYONE
        elif node.get("match", "all") == "all":
            outer, outer_by_row = ctx.narrowed, ctx.by_row
            if any(child.get("field") not in AGGREGATES for child in children):
                ctx.narrowed = True
            row_rules = sum(1 for child in children if _row_local(child))
            if row_rules >= ROW_RULES_TO_PROBE and len(children) > row_rules:
                ctx.by_row = True
            parts = [_node(child, ctx) for child in children]
            ctx.narrowed, ctx.by_row = outer, outer_by_row
            q = parts[0]
            for part in parts[1:]:
                q &= part
        elif not ctx.union:
            parts = [_node(child, ctx) for child in children]
            q = parts[0]
            for part in parts[1:]:
                q |= part
        else:
            local = [_node(child, ctx) for child in children if _row_local(child)]
            other = [_branch(child, ctx) for child in children if not _row_local(child)]
            q = _any_of(_or(local), other)
    return ~q if node.get("negate") else q


def _branch(node: dict[str, Any], ctx: Context) -> Q:
    """One alternative of an OR, compiled on its own: no condition outside it narrows it."""
    outer, outer_by_row = ctx.narrowed, ctx.by_row
    ctx.narrowed = ctx.by_row = False
    try:
        return _node(node, ctx)
    finally:
        ctx.narrowed, ctx.by_row = outer, outer_by_row


def _or(parts: list[Q]) -> Q | None:
    if not parts:
        return None
    q = parts[0]
    for part in parts[1:]:
        q |= part
    return q


def _any_of(row_q: Q | None, query_parts: list[Q]) -> Q:
    """Clients passing any of the parts.

    Row conditions alone stay an OR on the client row. Once an alternative needs a subquery,
    ``EXISTS .. OR EXISTS ..`` is not a join for PostgreSQL: it runs every subquery once per
    client that reaches it. So the alternatives become ``id IN (<each> UNION <each>)``: each
    alternative is a query of its own, where its EXISTS are semi-joins again (driven by its most
    selective table), and the union is joined once. UNION, not UNION ALL: PostgreSQL then knows
    the ids are distinct and estimates their number from the alternatives (after a UNION ALL it
    assumes 200 distinct ids, and probes what follows once per id as if there were 200).
    """
    if not query_parts:
        return _NOTHING if row_q is None else row_q
    if len(query_parts) == 1 and row_q is None:
        return query_parts[0]
    parts = query_parts if row_q is None else [row_q, *query_parts]
    selects = [Client.objects.filter(part).values("pk") for part in parts]
    union = selects[0].union(*selects[1:])
    return Q(pk__in=union)


def _rule(rule: dict[str, Any], ctx: Context) -> Q:
    compiler = COMPILERS[rule["field"]]
    return compiler(rule, ctx)


# Building blocks ----------------------------------------------------------------------------------


def _value(rule: dict[str, Any]) -> Any:
    """A rule's value, whose shape its operator gives (checked when the rule was saved)."""
    return rule.get("value")


def _exists(model: Any, *conditions: Q, **filters: Any) -> Q:
    return Q(Exists(model.objects.filter(*conditions, client_id=OuterRef("pk"), **filters)))


class InGrouped(Expression):
    """``EXISTS (SELECT 1 FROM (<grouped subquery>) g WHERE g.client_id = client.id)``.

    Correlating a GROUP BY ... HAVING query row by row is slow; as a derived table PostgreSQL
    aggregates once and semi- or anti-joins, and the same SQL is valid on SQLite.
    """

    output_field = BooleanField()
    conditional = True

    def __init__(self, queryset: QuerySet[Any], alias: str) -> None:
        super().__init__(output_field=BooleanField())
        self.queryset = queryset
        self.alias = alias
        self.key: Any = F("pk")

    def get_source_expressions(self) -> list[Any]:
        return [self.key]

    def set_source_expressions(self, exprs: Sequence[Any]) -> None:
        (self.key,) = exprs

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, tuple[Any, ...]]:
        key_sql, key_params = compiler.compile(self.key)
        inner = self.queryset.query.get_compiler(connection=connection)
        sub_sql, sub_params = inner.as_sql()
        alias = connection.ops.quote_name(self.alias)
        sql = f'EXISTS (SELECT 1 FROM ({sub_sql}) {alias} WHERE {alias}."client_id" = {key_sql})'
        return sql, (*sub_params, *key_params)


def _compare(lhs: str, op: str, value: Any) -> Q:
    if op == "between":
        return Q(**{f"{lhs}__gte": value[0], f"{lhs}__lte": value[1]})
    if op == "ne":
        return ~Q(**{lhs: value})
    if op == "eq":
        return Q(**{lhs: value})
    return Q(**{f"{lhs}__{op}": value})


def _satisfies(op: str, value: Any, probe: Any) -> bool:
    """Whether the value ``probe`` (0 for a client with no rows) passes the comparison."""
    if probe is None:
        return False
    if op == "between":
        return value[0] <= probe <= value[1]
    return {
        "eq": probe == value,
        "ne": probe != value,
        "gt": probe > value,
        "gte": probe >= value,
        "lt": probe < value,
        "lte": probe <= value,
    }[op]


AGGREGATES = {"purchase_count", "total_spend", "average_check", "lifetime_spend"}


def _aggregate(
    model: Any, aggregate: Any, op: str, value: Any, ctx: Context, *conditions: Q, empty: Any
) -> Q:
    """Clients whose aggregate over their rows passes; clients with no rows count as ``empty``.

    Alone (or among other aggregates) it is one grouped derived table that PostgreSQL aggregates
    once and joins; next to other conditions it is a per-client probe of the (client, time)
    index, which PostgreSQL runs last, only for the clients the cheaper conditions let through.
    """
    if ctx.narrowed:
        per_client = (
            model.objects.filter(*conditions, client_id=OuterRef("pk"))
            .order_by()
            .values("client_id")
            .annotate(agg=aggregate)
        )
        if _satisfies(op, value, empty):
            return ~Q(Exists(per_client.exclude(_compare("agg", op, value))))
        return Q(Exists(per_client.filter(_compare("agg", op, value))))
    grouped = (
        model.objects.filter(*conditions).order_by().values("client_id").annotate(agg=aggregate)
    )
    if _satisfies(op, value, empty):
        failing = grouped.exclude(_compare("agg", op, value)).values("client_id")
        return ~Q(InGrouped(failing, ctx.next_alias()))
    passing = grouped.filter(_compare("agg", op, value)).values("client_id")
    return Q(InGrouped(passing, ctx.next_alias()))


def _decimal(value: Any) -> Any:
    if isinstance(value, list):
        return [Decimal(v) for v in value]
    return Decimal(value)


def _period(rule: dict[str, Any], ctx: Context, column: str) -> Q:
    period = rule.get("period")
    if not period:
        return Q()
    if "last_days" in period:
        return Q(**{f"{column}__gte": ctx.now - dt.timedelta(days=period["last_days"])})
    if "last_hours" in period:
        return Q(**{f"{column}__gte": ctx.now - dt.timedelta(hours=period["last_hours"])})
    q = Q()
    if "from" in period:
        q &= Q(**{f"{column}__gte": ctx.start_of(dt.date.fromisoformat(period["from"]))})
    if "to" in period:
        end = dt.date.fromisoformat(period["to"]) + dt.timedelta(days=1)
        q &= Q(**{f"{column}__lt": ctx.start_of(end)})
    return q


def _int_range(op: str, value: Any) -> tuple[int | None, int | None]:
    """An integer comparison (not "ne") as an inclusive range, open where None."""
    if op == "between":
        return value[0], value[1]
    if op == "eq":
        return value, value
    if op == "gt":
        return value + 1, None
    if op == "gte":
        return value, None
    if op == "lt":
        return None, value - 1
    if op == "lte":
        return None, value
    raise CompileError(op)


def _years_ago(today: dt.date, years: int) -> dt.date:
    try:
        return today.replace(year=today.year - years)
    except ValueError:  # 29 February in a year without one
        return today.replace(year=today.year - years, day=28)


def _subtree(category_ids: list[int]) -> QuerySet[Category]:
    """Categories inside any of ``category_ids`` (themselves included), all in SQL: a category
    is inside a root when its materialized path starts with the root's."""
    roots = Category.objects.filter(pk__in=category_ids).filter(
        StartsWith(OuterRef("path"), F("path"))
    )
    return Category.objects.filter(Exists(roots))


def _products_in(category_ids: list[int]) -> QuerySet[Product, Any]:
    return Product.objects.filter(category__in=_subtree(category_ids)).values("pk")


# Dates on a datetime column -----------------------------------------------------------------------


def _date_rule(column: str, op: str, value: Any, ctx: Context) -> Q:
    if op == "before":
        return Q(**{f"{column}__lt": ctx.start_of(dt.date.fromisoformat(value))})
    if op == "after":
        next_day = dt.date.fromisoformat(value) + dt.timedelta(days=1)
        return Q(**{f"{column}__gte": ctx.start_of(next_day)})
    if op == "between":
        start = ctx.start_of(dt.date.fromisoformat(value[0]))
        end = ctx.start_of(dt.date.fromisoformat(value[1]) + dt.timedelta(days=1))
        return Q(**{f"{column}__gte": start, f"{column}__lt": end})
    if op == "in_last_days":
        return Q(**{f"{column}__gte": ctx.now - dt.timedelta(days=value)})
    if op == "more_than_days_ago":
        return Q(**{f"{column}__lt": ctx.now - dt.timedelta(days=value)})
    raise CompileError(op)


# Profile ------------------------------------------------------------------------------------------


def _column_rule(column: str) -> Callable[[dict[str, Any], Context], Q]:
    def compile_(rule: dict[str, Any], ctx: Context) -> Q:
        op, value = rule["operator"], _value(rule)
        if op == "in":
            q = Q(**{f"{column}__in": value})
        elif op == "not_in":
            q = ~Q(**{f"{column}__in": value})
        elif op == "contains":
            # StrIndex is case-sensitive on both backends; LIKE is not on SQLite.
            q = Q(_strindex_positive(column, value))
        elif op == "is_empty":
            q = Q(**{column: ""})
        elif op == "is_not_empty":
            q = ~Q(**{column: ""})
        else:
            q = _compare(column, op, value)
        return q

    return compile_


def _strindex_positive(column: str, value: str) -> Any:
    from django.db.models import Value
    from django.db.models.lookups import GreaterThan

    return GreaterThan(StrIndex(F(column), Value(value)), 0)


def _age(rule: dict[str, Any], ctx: Context) -> Q:
    op, value = rule["operator"], _value(rule)
    if op == "is_empty":
        return Q(birth_date__isnull=True)
    if op == "is_not_empty":
        return Q(birth_date__isnull=False)
    if op == "ne":
        return Q(birth_date__isnull=False) & ~_age({"operator": "eq", "value": value}, ctx)
    low, high = _int_range(op, value)
    q = Q(birth_date__isnull=False)
    if low is not None:  # at least ``low`` full years: born on or before that many years ago
        q &= Q(birth_date__lte=_years_ago(ctx.today, low))
    if high is not None:  # younger than high + 1
        q &= Q(birth_date__gt=_years_ago(ctx.today, high + 1))
    return q


def _has_children(rule: dict[str, Any], ctx: Context) -> Q:
    q = _exists(Child)
    return q if rule["operator"] == "yes" else ~q


def _child_age(rule: dict[str, Any], ctx: Context) -> Q:
    op, value = rule["operator"], _value(rule)
    year = ctx.today.year
    if op == "ne":
        return _exists(Child, ~Q(birth_year=year - value))
    low, high = _int_range(op, value)
    q = Q()
    if low is not None:
        q &= Q(birth_year__lte=year - low)
    if high is not None:
        q &= Q(birth_year__gte=year - high)
    return _exists(Child, q)


def _pets(rule: dict[str, Any], ctx: Context) -> Q:
    q = _exists(Pet, kind__in=rule["value"])
    return q if rule["operator"] == "any_of" else ~q


def _interests(rule: dict[str, Any], ctx: Context) -> Q:
    through = Client.interests.through
    ids = rule["value"]
    if rule["operator"] == "all_of":
        q = Q()
        for interest_id in ids:
            q &= _exists(through, interest_id=interest_id)
        return q
    q = _exists(through, interest_id__in=ids)
    return q if rule["operator"] == "any_of" else ~q


def _attribute(rule: dict[str, Any], ctx: Context) -> Q:
    key, op, value = rule["key"], rule["operator"], rule.get("value")
    lhs = f"attributes__{key}"
    if op == "exists":
        return Q(attributes__has_key=key)
    if op == "not_exists":
        return ~Q(attributes__has_key=key)
    if op == "in":
        return Q(**{f"{lhs}__in": value})
    if op == "ne":
        return Q(attributes__has_key=key) & ~Q(**{lhs: value})
    return Q(attributes__has_key=key) & _compare(lhs, op, value)


def _created(rule: dict[str, Any], ctx: Context) -> Q:
    return _date_rule("created_at", rule["operator"], rule.get("value"), ctx)


# Consent and loyalty ------------------------------------------------------------------------------


def _consent(rule: dict[str, Any], ctx: Context) -> Q:
    q = _exists(
        Consent,
        channel=rule["channel"],
        purpose=rule.get("purpose") or "marketing",
        is_granted=True,
    )
    return q if rule["operator"] == "yes" else ~q


def _tier(rule: dict[str, Any], ctx: Context) -> Q:
    q = _exists(LoyaltyAccount, tier_id__in=rule["value"])
    return q if rule["operator"] == "in" else ~q


def _account_compare(column: str, decimal: bool = False) -> Callable[..., Q]:
    def compile_(rule: dict[str, Any], ctx: Context) -> Q:
        value = _decimal(rule["value"]) if decimal else rule["value"]
        return _exists(LoyaltyAccount, _compare(column, rule["operator"], value))

    return compile_


def _lifetime_spend(rule: dict[str, Any], ctx: Context) -> Q:
    value = _decimal(rule["value"])
    return _aggregate(Purchase, Sum("total"), rule["operator"], value, ctx, empty=Decimal(0))


# Purchases ----------------------------------------------------------------------------------------


class ProbedExists(Exists):
    """``EXISTS (... OFFSET 0)``: PostgreSQL keeps an EXISTS with an OFFSET as a subplan run per
    client row that reaches it (after the cheaper conditions on that row) instead of turning it
    into a join; SQLite ignores the OFFSET 0."""

    def as_sql(self, compiler: Any, connection: Any, *args: Any, **kwargs: Any) -> Any:
        sql, params = super().as_sql(compiler, connection, *args, **kwargs)
        if not sql.endswith(")"):  # pragma: no cover - Django's template is EXISTS(...)
            raise CompileError(sql)
        return f"{sql[:-1]} OFFSET 0)", params


# A purchase window at least this long counts as long, and this many conditions on the client
# row beside it let few enough clients through to probe them one by one (see _bought).
LONG_WINDOW = dt.timedelta(days=60)
ROW_RULES_TO_PROBE = 2


def _long_window(rule: dict[str, Any]) -> bool:
    period = rule.get("period") or {}
    if "last_days" in period:
        return period["last_days"] >= LONG_WINDOW.days
    if "last_hours" in period:
        return dt.timedelta(hours=period["last_hours"]) >= LONG_WINDOW
    if "from" in period and "to" in period:
        span = dt.date.fromisoformat(period["to"]) - dt.date.fromisoformat(period["from"])
        return span >= LONG_WINDOW
    return True  # open-ended: at any time, or from / until a date


def _bought(item_filter: Callable[[dict[str, Any]], Q]) -> Callable[..., Q]:
    """Bought a product / category / brand in a window.

    Alone, PostgreSQL semi-joins the items in the window (the (product, time) index) with the
    clients: right for a short window. Over a long window that read is millions of rows at a
    million clients (half a year of pet goods: 1.8M), yet PostgreSQL's costs still prefer it to
    probing the clients that the conditions on their own row let through. So next to two or
    more such conditions, a long window is a per-client probe of the (client, time) index
    instead (about 3.5 µs a client). One condition is too weak a filter to bet on: "women who
    bought a laptop this year" probes 540k clients (2.2 s) where the join reads 0.5 s.
    """

    def compile_(rule: dict[str, Any], ctx: Context) -> Q:
        conditions = (item_filter(rule), _period(rule, ctx, "purchased_at"))
        if ctx.by_row and _long_window(rule):
            items = PurchaseItem.objects.filter(*conditions, client_id=OuterRef("pk"))
            q = Q(ProbedExists(items))
        else:
            q = _exists(PurchaseItem, *conditions)
        return ~q if rule["operator"] in ("none_of", "no") else q

    return compile_


def _purchase_count(rule: dict[str, Any], ctx: Context) -> Q:
    op, value = rule["operator"], rule["value"]
    period = _period(rule, ctx, "purchased_at")
    if (op == "eq" and value == 0) or (op == "lt" and value == 1) or (op == "lte" and value == 0):
        return ~_exists(Purchase, period)
    if (op == "gte" and value == 1) or (op == "gt" and value == 0) or (op == "ne" and value == 0):
        return _exists(Purchase, period)
    # COUNT(*), not COUNT(id): the (client, time) index covers it, no visit to the heap.
    return _aggregate(Purchase, Count("*"), op, value, ctx, period, empty=0)


def _total_spend(rule: dict[str, Any], ctx: Context) -> Q:
    period = _period(rule, ctx, "purchased_at")
    value = _decimal(rule["value"])
    return _aggregate(
        Purchase, Sum("total"), rule["operator"], value, ctx, period, empty=Decimal(0)
    )


def _average_check(rule: dict[str, Any], ctx: Context) -> Q:
    period = _period(rule, ctx, "purchased_at")
    value = _decimal(rule["value"])
    return _aggregate(Purchase, Avg("total"), rule["operator"], value, ctx, period, empty=None)


def _days_since_last(rule: dict[str, Any], ctx: Context) -> Q:
    """The last purchase's local date is ``today - days``: there is a purchase in the date window
    and none after it. Two EXISTS on the (client, time) index instead of a MAX per client."""
    op, value = rule["operator"], rule["value"]
    if rule.get("category"):
        model: Any = PurchaseItem
        scope = Q(product_id__in=_products_in(rule["category"]))
    else:
        model, scope = Purchase, Q()
    if op == "ne":
        return _exists(model, scope) & ~_days_since_last(
            {**rule, "operator": "eq", "negate": False}, ctx
        )
    low, high = _int_range(op, value)
    # days in [low, high]  <=>  last in [start(today - high), start(today - low + 1))
    window = Q()
    if high is not None:
        window &= Q(purchased_at__gte=ctx.start_of(ctx.today - dt.timedelta(days=high)))
    if low is not None:
        later = ctx.start_of(ctx.today - dt.timedelta(days=low - 1))
        window &= Q(purchased_at__lt=later)
        return _exists(model, scope, window) & ~_exists(model, scope, purchased_at__gte=later)
    return _exists(model, scope, window)


def _first_purchase(rule: dict[str, Any], ctx: Context) -> Q:
    """The first purchase falls in a window: one purchase in it and none before it."""
    op, value = rule["operator"], rule["value"]
    window = _date_rule("purchased_at", op, value, ctx)
    if op in ("before", "more_than_days_ago"):
        return _exists(Purchase, window)
    start = {
        "after": lambda: ctx.start_of(dt.date.fromisoformat(value) + dt.timedelta(days=1)),
        "between": lambda: ctx.start_of(dt.date.fromisoformat(value[0])),
        "in_last_days": lambda: ctx.now - dt.timedelta(days=value),
    }[op]()
    return _exists(Purchase, window) & ~_exists(Purchase, purchased_at__lt=start)


# Behaviour, dates, segments -----------------------------------------------------------------------


def _event(rule: dict[str, Any], ctx: Context) -> Q:
    conditions = [Q(type=rule["event_type"]), _period(rule, ctx, "occurred_at")]
    if rule.get("product"):
        conditions.append(Q(product_id__in=rule["product"]))
    if rule.get("category"):
        conditions.append(Q(product_id__in=_products_in(rule["category"])))
    if rule.get("no_purchase_since"):
        later = Purchase.objects.filter(
            client_id=OuterRef("client_id"), purchased_at__gte=OuterRef("occurred_at")
        )
        conditions.append(~Q(Exists(later)))
    q = _exists(Event, *conditions)
    return q if rule["operator"] == "yes" else ~q


def _month_day_ranges(days: set[tuple[int, int]]) -> Q:
    q = Q()
    by_month: dict[int, list[int]] = {}
    for month, month_day in sorted(days):
        by_month.setdefault(month, []).append(month_day)
    for month, month_days in by_month.items():
        start = prev = month_days[0]
        for day in [*month_days[1:], None]:
            if day is not None and day == prev + 1:
                prev = day
                continue
            if start == prev:
                q |= Q(birth_date__month=month, birth_date__day=start)
            else:
                q |= Q(
                    birth_date__month=month, birth_date__day__gte=start, birth_date__day__lte=prev
                )
            if day is not None:
                start = prev = day
    return q


def _birthday(rule: dict[str, Any], ctx: Context) -> Q:
    op, value = rule["operator"], rule["value"]
    if op == "in_month":
        return Q(birth_date__month=value)
    days: set[tuple[int, int]] = set()
    for offset in range(min(value, 366) + 1):
        day = ctx.today + dt.timedelta(days=offset)
        days.add((day.month, day.day))
        if day.month == 2 and day.day == 28 and not calendar.isleap(day.year):
            days.add((2, 29))  # born on 29 February: celebrated on the 28th
    if len(days) >= 366:
        return Q(birth_date__isnull=False)
    return Q(birth_date__isnull=False) & _month_day_ranges(days)


def _segment(rule: dict[str, Any], ctx: Context) -> Q:
    from segments.models import Segment, SegmentKind, SegmentMember

    parts = []
    segments = list(Segment.objects.filter(pk__in=rule["value"]).only("pk", "kind", "rules"))
    # Several segments are alternatives: each compiled on its own, as a union (see _any_of);
    # "none of" stays a NOT (..OR..) on the row, since NOT IN is no anti-join.
    union = rule["operator"] == "any_of" and len(segments) > 1
    for segment in segments:
        if segment.pk in ctx.stack:
            raise CompileError(f"segment {segment.pk} refers to itself")
        if segment.kind == SegmentKind.STATIC:
            parts.append(_exists(SegmentMember, segment_id=segment.pk))
        else:
            inner = replace(ctx, stack=(*ctx.stack, segment.pk))
            if union:
                inner.narrowed = False
            if rule["operator"] != "any_of":
                inner.union = False
            parts.append(compile_condition(segment.rules, inner))
    if union:
        return _any_of(None, parts)
    q = _or(parts)
    if q is None:
        q = _NOTHING
    return q if rule["operator"] == "any_of" else ~q


COMPILERS: dict[str, Callable[[dict[str, Any], Context], Q]] = {
    "age": _age,
    "gender": _column_rule("gender"),
    "city": _column_rule("city"),
    "region": _column_rule("region"),
    "time_zone": _column_rule("time_zone"),
    "family_status": _column_rule("family_status"),
    "has_children": _has_children,
    "child_age": _child_age,
    "pets": _pets,
    "occupation": _column_rule("occupation"),
    "education": _column_rule("education"),
    "interests": _interests,
    "source": _column_rule("source"),
    "preferred_channel": _column_rule("preferred_channel"),
    "attribute": _attribute,
    "created": _created,
    "consent": _consent,
    "tier": _tier,
    "points_balance": _account_compare("balance"),
    "rolling_spend": _account_compare("rolling_spend", decimal=True),
    "lifetime_spend": _lifetime_spend,
    "bought_product": _bought(lambda r: Q(product_id__in=r["value"])),
    "bought_category": _bought(lambda r: Q(product_id__in=_products_in(r["value"]))),
    "bought_brand": _bought(
        lambda r: Q(product_id__in=Product.objects.filter(brand_id__in=r["value"]).values("pk"))
    ),
    "bought_private_label": _bought(
        lambda r: Q(
            product_id__in=Product.objects.filter(brand__is_private_label=True).values("pk")
        )
    ),
    "purchase_count": _purchase_count,
    "total_spend": _total_spend,
    "average_check": _average_check,
    "days_since_last_purchase": _days_since_last,
    "first_purchase": _first_purchase,
    "event": _event,
    "birthday": _birthday,
    "segment": _segment,
}

_missing = set(FIELDS) - set(COMPILERS)
if _missing:  # pragma: no cover - caught at import in every test run
    raise CompileError(f"catalog fields without a compiler: {sorted(_missing)}")
