"""The field catalog: the single source of truth for what segment rules may test.

Every rule names a ``field`` from ``FIELDS`` and one of that field's ``operators``; the operator
says what ``value`` it takes (none, one, two, a list), the field says of which type, and the
field's ``params`` are further keys a rule may or must carry (a time window, a channel, an
attribute key...). ``segments.rules.validate_rules`` checks a rule tree against this catalog,
``segments.compiler`` turns it into SQL and ``segments.rules.explain_rules`` into words; the
REST API and the admin builder read ``catalog_as_json()``. See ``segments/README.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from crm.models import (
    Channel,
    ClientSource,
    ConsentPurpose,
    Education,
    EventType,
    FamilyStatus,
    Gender,
    PetKind,
)

# Value types --------------------------------------------------------------------------------------
INT = "int"  # a whole number >= 0
DECIMAL = "decimal"  # money: a number or a numeric string, stored as a string
STRING = "string"
CHOICE = "choice"  # one of the field's choices
REF = "ref"  # the id of a row of the field's ``ref`` model
DATE = "date"  # "YYYY-MM-DD", a local date
SCALAR = "scalar"  # a JSON string, number or boolean (attributes)
BOOL = "bool"
PERIOD = "period"  # {"last_days": N} | {"last_hours": N} | {"from": date, "to": date}

# Operators ----------------------------------------------------------------------------------------
NONE, ONE, TWO, MANY = "none", "one", "two", "many"


@dataclass(frozen=True)
class Operator:
    key: str
    label: Promise
    arity: str
    value_type: str | None = None  # overrides the field's type (e.g. "in the last N days")


OPERATORS: dict[str, Operator] = {
    op.key: op
    for op in (
        Operator("eq", _("is"), ONE),
        Operator("ne", _("is not"), ONE),
        Operator("gt", _("is more than"), ONE),
        Operator("gte", _("is at least"), ONE),
        Operator("lt", _("is less than"), ONE),
        Operator("lte", _("is at most"), ONE),
        Operator("between", _("is between"), TWO),
        Operator("in", _("is one of"), MANY),
        Operator("not_in", _("is none of"), MANY),
        Operator("contains", _("contains"), ONE),
        Operator("is_empty", _("is not filled in"), NONE),
        Operator("is_not_empty", _("is filled in"), NONE),
        Operator("any_of", _("any of"), MANY),
        Operator("all_of", _("all of"), MANY),
        Operator("none_of", _("none of"), MANY),
        Operator("yes", _("yes"), NONE),
        Operator("no", _("no"), NONE),
        Operator("exists", _("is set"), NONE),
        Operator("not_exists", _("is not set"), NONE),
        Operator("before", _("is before"), ONE),
        Operator("after", _("is after"), ONE),
        Operator("in_last_days", _("is within the last N days"), ONE, INT),
        Operator("more_than_days_ago", _("is more than N days ago"), ONE, INT),
        Operator("in_next_days", _("is within the next N days"), ONE, INT),
        Operator("in_month", _("is in month"), ONE, INT),
    )
}

COMPARE = ("eq", "ne", "gt", "gte", "lt", "lte", "between")
TEXT = ("in", "not_in", "contains", "is_empty", "is_not_empty")
CHOOSE = ("in", "not_in")
DATES = ("before", "after", "between", "in_last_days", "more_than_days_ago")
BOUGHT = ("any_of", "none_of")
YES_NO = ("yes", "no")


# Params -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    name: str
    label: Promise
    type: str
    required: bool = False
    many: bool = False
    choices: tuple[tuple[str, Any], ...] = ()
    ref: str | None = None
    default: Any = None


PERIOD_PARAM = Param("period", _("period"), PERIOD)
CATEGORY_PARAM = Param("category", _("in category"), REF, many=True, ref="category")


# Fields -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    key: str
    group: str
    label: Promise
    type: str
    operators: tuple[str, ...]
    choices: tuple[tuple[str, Any], ...] = ()
    ref: str | None = None
    params: tuple[Param, ...] = ()
    help: Promise | str = ""
    min_value: int = 0
    max_value: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)


GROUPS: dict[str, Promise] = {
    "profile": _("Profile"),
    "consent": _("Consent"),
    "loyalty": _("Loyalty"),
    "purchases": _("Purchases"),
    "behaviour": _("Behaviour"),
    "dates": _("Dates"),
    "segments": _("Segments"),
}


def _choices(text_choices: Any, *, blank: bool = False) -> tuple[tuple[str, Any], ...]:
    return tuple((v, label) for v, label in text_choices.choices if blank or v)


MONTHS = tuple(
    (str(n), label)
    for n, label in enumerate(
        (
            _("January"),
            _("February"),
            _("March"),
            _("April"),
            _("May"),
            _("June"),
            _("July"),
            _("August"),
            _("September"),
            _("October"),
            _("November"),
            _("December"),
        ),
        start=1,
    )
)

FIELDS: dict[str, Field] = {
    f.key: f
    for f in (
        # Profile
        Field(
            "age",
            "profile",
            _("age"),
            INT,
            (*COMPARE, "is_empty", "is_not_empty"),
            help=_("Full years, from the birth date."),
            max_value=150,
        ),
        Field("gender", "profile", _("gender"), CHOICE, CHOOSE, _choices(Gender, blank=True)),
        Field("city", "profile", _("city"), STRING, TEXT),
        Field("region", "profile", _("district / region"), STRING, TEXT),
        Field("time_zone", "profile", _("time zone"), STRING, CHOOSE),
        Field(
            "family_status",
            "profile",
            _("family status"),
            CHOICE,
            CHOOSE,
            _choices(FamilyStatus, blank=True),
        ),
        Field("has_children", "profile", _("has children"), BOOL, YES_NO),
        Field(
            "child_age",
            "profile",
            _("has a child aged"),
            INT,
            COMPARE,
            help=_("Age in years from the child's birth year."),
            max_value=100,
        ),
        Field("pets", "profile", _("has pets"), CHOICE, BOUGHT, _choices(PetKind)),
        Field("occupation", "profile", _("occupation"), STRING, TEXT),
        Field(
            "education", "profile", _("education"), CHOICE, CHOOSE, _choices(Education, blank=True)
        ),
        Field(
            "interests",
            "profile",
            _("interests"),
            REF,
            ("any_of", "all_of", "none_of"),
            ref="interest",
        ),
        Field("source", "profile", _("source"), CHOICE, CHOOSE, _choices(ClientSource)),
        Field(
            "preferred_channel",
            "profile",
            _("preferred channel"),
            CHOICE,
            CHOOSE,
            _choices(Channel, blank=True),
        ),
        Field(
            "attribute",
            "profile",
            _("attribute"),
            SCALAR,
            ("exists", "not_exists", "eq", "ne", "in", "gt", "gte", "lt", "lte"),
            params=(Param("key", _("attribute key"), STRING, required=True),),
            help=_("A key of the client's integration attributes."),
        ),
        Field("created", "profile", _("client since"), DATE, DATES),
        # Consent
        Field(
            "consent",
            "consent",
            _("has a valid consent"),
            BOOL,
            YES_NO,
            params=(
                Param("channel", _("channel"), CHOICE, required=True, choices=_choices(Channel)),
                Param(
                    "purpose",
                    _("purpose"),
                    CHOICE,
                    choices=_choices(ConsentPurpose),
                    default=ConsentPurpose.MARKETING.value,
                ),
            ),
        ),
        # Loyalty
        Field("tier", "loyalty", _("loyalty tier"), REF, CHOOSE, ref="tier"),
        Field("points_balance", "loyalty", _("points balance"), INT, COMPARE),
        Field(
            "rolling_spend",
            "loyalty",
            _("rolling spend"),
            DECIMAL,
            COMPARE,
            help=_("Spend over the loyalty window, as of the last tier recomputation."),
        ),
        Field("lifetime_spend", "loyalty", _("lifetime spend"), DECIMAL, COMPARE),
        # Purchases
        Field(
            "bought_product",
            "purchases",
            _("bought product"),
            REF,
            BOUGHT,
            ref="product",
            params=(PERIOD_PARAM,),
        ),
        Field(
            "bought_category",
            "purchases",
            _("bought in category"),
            REF,
            BOUGHT,
            ref="category",
            params=(PERIOD_PARAM,),
            help=_("Subcategories included."),
        ),
        Field(
            "bought_brand",
            "purchases",
            _("bought brand"),
            REF,
            BOUGHT,
            ref="brand",
            params=(PERIOD_PARAM,),
        ),
        Field(
            "bought_private_label",
            "purchases",
            _("bought private label"),
            BOOL,
            YES_NO,
            params=(PERIOD_PARAM,),
        ),
        Field(
            "purchase_count",
            "purchases",
            _("number of purchases"),
            INT,
            COMPARE,
            params=(PERIOD_PARAM,),
        ),
        Field(
            "total_spend",
            "purchases",
            _("total spend"),
            DECIMAL,
            COMPARE,
            params=(PERIOD_PARAM,),
        ),
        Field(
            "average_check",
            "purchases",
            _("average check"),
            DECIMAL,
            COMPARE,
            params=(PERIOD_PARAM,),
            help=_("Clients without purchases in the period have no average check."),
        ),
        Field(
            "days_since_last_purchase",
            "purchases",
            _("days since the last purchase"),
            INT,
            COMPARE,
            params=(CATEGORY_PARAM,),
            help=_("Calendar days; clients who never bought (in the category) do not match."),
        ),
        Field("first_purchase", "purchases", _("first purchase"), DATE, DATES),
        # Behaviour
        Field(
            "event",
            "behaviour",
            _("had an event"),
            BOOL,
            YES_NO,
            params=(
                Param(
                    "event_type",
                    _("event type"),
                    CHOICE,
                    required=True,
                    choices=_choices(EventType),
                ),
                Param("product", _("for product"), REF, many=True, ref="product"),
                Param("category", _("for category"), REF, many=True, ref="category"),
                PERIOD_PARAM,
                Param("no_purchase_since", _("and no purchase since"), BOOL, default=False),
            ),
            help=_("Abandoned cart: added to cart in the last 24 hours and no purchase since."),
        ),
        # Dates
        Field(
            "birthday",
            "dates",
            _("birthday"),
            INT,
            ("in_next_days", "in_month"),
            help=_("0 days means today. Born on 29 February: 28 February in other years."),
            max_value=366,
            extra={"choices_for": {"in_month": MONTHS}},
        ),
        # Segments
        Field(
            "segment",
            "segments",
            _("member of segment"),
            REF,
            BOUGHT,
            ref="segment",
            help=_("Rule segments are evaluated live; static segments by their list."),
        ),
    )
}

MAX_DEPTH = 6
MAX_RULES = 100
MAX_LIST = 1000
MAX_PERIOD_DAYS = 3660


def ref_models() -> dict[str, Callable[[], Any]]:
    """Models behind REF values, imported lazily (segments depends on crm and loyalty)."""
    from crm.models import Brand, Category, Interest, Product
    from loyalty.models import Tier
    from segments.models import Segment

    return {
        "category": lambda: Category,
        "brand": lambda: Brand,
        "product": lambda: Product,
        "interest": lambda: Interest,
        "tier": lambda: Tier,
        "segment": lambda: Segment,
    }


def _param_json(p: Param) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": p.name,
        "label": str(p.label),
        "type": p.type,
        "required": p.required,
        "many": p.many,
    }
    if p.choices:
        out["choices"] = [[v, str(label)] for v, label in p.choices]
    if p.ref:
        out["ref"] = p.ref
    if p.default is not None:
        out["default"] = p.default
    return out


def catalog_as_json() -> dict[str, Any]:
    """The catalog for clients of the API and the admin builder, in the active language."""
    fields = []
    for f in FIELDS.values():
        item: dict[str, Any] = {
            "key": f.key,
            "group": f.group,
            "group_label": str(GROUPS[f.group]),
            "label": str(f.label),
            "type": f.type,
            "operators": [
                {
                    "key": op,
                    "label": str(OPERATORS[op].label),
                    "arity": OPERATORS[op].arity,
                    "value_type": OPERATORS[op].value_type or f.type,
                }
                for op in f.operators
            ],
            "params": [_param_json(p) for p in f.params],
            "help": str(f.help),
        }
        if f.choices:
            item["choices"] = [[v, str(label)] for v, label in f.choices]
        if f.ref:
            item["ref"] = f.ref
        if "choices_for" in f.extra:
            item["choices_for"] = {
                op: [[v, str(label)] for v, label in ch]
                for op, ch in f.extra["choices_for"].items()
            }
        fields.append(item)
    return {
        "groups": [{"key": k, "label": str(v)} for k, v in GROUPS.items()],
        "fields": fields,
        "match": [
            {"key": "all", "label": str(_("all of"))},
            {"key": "any", "label": str(_("any of"))},
        ],
        "period": {
            "last_days": str(_("in the last N days")),
            "last_hours": str(_("in the last N hours")),
            "between": str(_("between dates")),
        },
    }
