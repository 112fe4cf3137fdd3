"""Every field and operator of the catalog against the crafted world (see conftest), on SQLite
and PostgreSQL alike: the expected answers are the same on both."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any, cast

import pytest

from crm.models import Client
from segments.compiler import compile_rules
from segments.models import Segment, SegmentMember
from segments.rules import validate_rules
from tests.segments.conftest import MSK, NOW, World

pytestmark = pytest.mark.django_db


def rule(field: str, operator: str, value: Any = None, **params: Any) -> dict[str, Any]:
    out = {"field": field, "operator": operator, **params}
    if value is not None:
        out["value"] = value
    return out


def matching(tree: dict[str, Any], now: dt.datetime = NOW) -> list[str]:
    valid = validate_rules(tree)
    external_ids = compile_rules(valid, now=now).values_list("external_id", flat=True)
    return sorted(cast("Iterable[str]", external_ids))  # every client here has an external ID


def only(r: dict[str, Any]) -> dict[str, Any]:
    return {"match": "all", "rules": [r]}


SPB = "Санкт-Петербург"
CASES: list[tuple[str, Callable[[World], dict[str, Any]], list[str]]] = [
    # profile
    ("age eq", lambda w: rule("age", "eq", 35), ["anna"]),
    ("age ne (known ages only)", lambda w: rule("age", "ne", 35), ["boris", "vera"]),
    ("age gt", lambda w: rule("age", "gt", 35), ["boris"]),
    ("age gte", lambda w: rule("age", "gte", 35), ["anna", "boris"]),
    ("age lt (Feb 29 born is 25 on Feb 27)", lambda w: rule("age", "lt", 26), ["vera"]),
    ("age lte", lambda w: rule("age", "lte", 25), ["vera"]),
    ("age between", lambda w: rule("age", "between", [25, 35]), ["anna", "vera"]),
    ("age unknown", lambda w: rule("age", "is_empty"), ["gleb"]),
    ("age known", lambda w: rule("age", "is_not_empty"), ["anna", "boris", "vera"]),
    ("gender in", lambda w: rule("gender", "in", ["f"]), ["anna", "vera"]),
    ("gender not_in", lambda w: rule("gender", "not_in", ["f"]), ["boris", "gleb"]),
    ("gender unknown", lambda w: rule("gender", "in", [""]), ["gleb"]),
    ("city in", lambda w: rule("city", "in", [SPB]), ["anna", "vera"]),
    ("city not_in", lambda w: rule("city", "not_in", [SPB]), ["boris", "gleb"]),
    ("city contains", lambda w: rule("city", "contains", "Петер"), ["anna", "vera"]),
    ("contains is case-sensitive", lambda w: rule("city", "contains", "петер"), []),
    ("city empty", lambda w: rule("city", "is_empty"), ["gleb"]),
    ("city filled", lambda w: rule("city", "is_not_empty"), ["anna", "boris", "vera"]),
    ("region in", lambda w: rule("region", "in", ["Центральный"]), ["anna"]),
    ("time zone", lambda w: rule("time_zone", "in", ["Asia/Yekaterinburg"]), ["boris"]),
    ("family status", lambda w: rule("family_status", "in", ["married"]), ["anna"]),
    (
        "family status not",
        lambda w: rule("family_status", "not_in", ["married"]),
        ["boris", "gleb", "vera"],
    ),
    ("has children", lambda w: rule("has_children", "yes"), ["anna"]),
    ("no children", lambda w: rule("has_children", "no"), ["boris", "gleb", "vera"]),
    ("child age eq", lambda w: rule("child_age", "eq", 8), ["anna"]),
    ("child age gt", lambda w: rule("child_age", "gt", 8), []),
    ("child age between", lambda w: rule("child_age", "between", [5, 10]), ["anna"]),
    ("child age ne", lambda w: rule("child_age", "ne", 8), []),
    ("pets any", lambda w: rule("pets", "any_of", ["cat"]), ["anna"]),
    ("pets any of two", lambda w: rule("pets", "any_of", ["cat", "dog"]), ["anna", "boris"]),
    ("pets none", lambda w: rule("pets", "none_of", ["cat"]), ["boris", "gleb", "vera"]),
    ("occupation contains", lambda w: rule("occupation", "contains", "программист"), ["anna"]),
    ("occupation in", lambda w: rule("occupation", "in", ["водитель"]), ["boris"]),
    ("education", lambda w: rule("education", "in", ["higher"]), ["anna"]),
    (
        "interests any",
        lambda w: rule("interests", "any_of", [w.yoga.pk, w.fishing.pk]),
        ["anna", "boris"],
    ),
    ("interests all", lambda w: rule("interests", "all_of", [w.yoga.pk, w.fishing.pk]), []),
    ("interests all of one", lambda w: rule("interests", "all_of", [w.yoga.pk]), ["anna"]),
    (
        "interests none",
        lambda w: rule("interests", "none_of", [w.yoga.pk]),
        ["boris", "gleb", "vera"],
    ),
    ("source", lambda w: rule("source", "in", ["web", "app"]), ["anna", "vera"]),
    ("preferred channel", lambda w: rule("preferred_channel", "in", ["sms"]), ["anna"]),
    ("attribute exists", lambda w: rule("attribute", "exists", key="vip"), ["anna"]),
    (
        "attribute missing",
        lambda w: rule("attribute", "not_exists", key="vip"),
        ["boris", "gleb", "vera"],
    ),
    ("attribute gt", lambda w: rule("attribute", "gt", 5, key="score"), ["anna"]),
    ("attribute lte", lambda w: rule("attribute", "lte", 5, key="score"), ["boris"]),
    ("attribute eq text", lambda w: rule("attribute", "eq", "gold", key="club"), ["anna"]),
    ("attribute ne text", lambda w: rule("attribute", "ne", "gold", key="club"), []),
    ("attribute eq bool", lambda w: rule("attribute", "eq", True, key="vip"), ["anna"]),
    ("attribute in", lambda w: rule("attribute", "in", [3, 7], key="score"), ["anna", "boris"]),
    ("created before", lambda w: rule("created", "before", "2025-01-10"), ["gleb"]),
    ("created after", lambda w: rule("created", "after", "2025-01-09"), ["anna", "boris", "vera"]),
    (
        "created on a day",
        lambda w: rule("created", "between", ["2025-01-10", "2025-01-10"]),
        ["vera"],
    ),
    ("created recently", lambda w: rule("created", "in_last_days", 100), ["boris"]),
    ("created long ago", lambda w: rule("created", "more_than_days_ago", 500), ["gleb"]),
    # consent
    ("consent sms", lambda w: rule("consent", "yes", channel="sms"), ["anna"]),
    ("no consent sms", lambda w: rule("consent", "no", channel="sms"), ["boris", "gleb", "vera"]),
    ("consent e-mail", lambda w: rule("consent", "yes", channel="email"), ["boris"]),
    (
        "consent other purpose",
        lambda w: rule("consent", "yes", channel="sms", purpose="profiling"),
        [],
    ),
    # loyalty
    ("tier in", lambda w: rule("tier", "in", [w.gold.pk]), ["anna"]),
    ("tier not in", lambda w: rule("tier", "not_in", [w.gold.pk]), ["boris", "gleb", "vera"]),
    ("balance gte", lambda w: rule("points_balance", "gte", 100), ["anna"]),
    ("balance eq", lambda w: rule("points_balance", "eq", 0), ["boris"]),
    ("balance lt (accounts only)", lambda w: rule("points_balance", "lt", 100), ["boris"]),
    ("rolling spend gt", lambda w: rule("rolling_spend", "gt", "1000"), ["anna"]),
    ("rolling spend between", lambda w: rule("rolling_spend", "between", [500, "1000"]), ["boris"]),
    ("lifetime spend gte", lambda w: rule("lifetime_spend", "gte", 40000), ["anna", "gleb"]),
    ("lifetime spend lt (none = 0)", lambda w: rule("lifetime_spend", "lt", 1000), ["vera"]),
    ("lifetime spend eq 0", lambda w: rule("lifetime_spend", "eq", 0), ["vera"]),
    # purchases
    ("bought product", lambda w: rule("bought_product", "any_of", [w.laptop.pk]), ["anna", "gleb"]),
    (
        "bought product recently",
        lambda w: rule("bought_product", "any_of", [w.laptop.pk], period={"last_days": 200}),
        ["anna"],
    ),
    (
        "not bought product",
        lambda w: rule("bought_product", "none_of", [w.laptop.pk]),
        ["boris", "vera"],
    ),
    (
        "bought in category subtree",
        lambda w: rule("bought_category", "any_of", [w.pets.pk]),
        ["anna", "boris"],
    ),
    (
        "bought in leaf category recently",
        lambda w: rule("bought_category", "any_of", [w.cat_food.pk], period={"last_days": 20}),
        ["anna"],
    ),
    (
        "bought in category between dates",
        lambda w: rule(
            "bought_category",
            "any_of",
            [w.electronics.pk],
            period={"from": "2025-01-01", "to": "2025-01-31"},
        ),
        ["gleb"],
    ),
    (
        "not bought in category",
        lambda w: rule("bought_category", "none_of", [w.pets.pk]),
        ["gleb", "vera"],
    ),
    ("bought brand", lambda w: rule("bought_brand", "any_of", [w.whiskas.pk]), ["anna"]),
    (
        "bought brand in hours window",
        lambda w: rule("bought_brand", "any_of", [w.own.pk], period={"last_hours": 32 * 24}),
        ["boris"],
    ),
    ("bought private label", lambda w: rule("bought_private_label", "yes"), ["boris"]),
    ("no private label", lambda w: rule("bought_private_label", "no"), ["anna", "gleb", "vera"]),
    (
        "private label recently",
        lambda w: rule("bought_private_label", "yes", period={"last_days": 20}),
        [],
    ),
    ("purchase count gte", lambda w: rule("purchase_count", "gte", 2), ["anna", "boris"]),
    ("purchase count eq 0", lambda w: rule("purchase_count", "eq", 0), ["vera"]),
    ("purchase count lt", lambda w: rule("purchase_count", "lt", 2), ["gleb", "vera"]),
    ("purchase count eq", lambda w: rule("purchase_count", "eq", 3), ["boris"]),
    (
        "purchase count in window",
        lambda w: rule("purchase_count", "gte", 1, period={"last_days": 31}),
        ["anna", "boris"],
    ),
    (
        "no purchase in window",
        lambda w: rule("purchase_count", "eq", 0, period={"last_days": 31}),
        ["gleb", "vera"],
    ),
    (
        "purchase count between",
        lambda w: rule("purchase_count", "between", [1, 2]),
        ["anna", "gleb"],
    ),
    ("purchase count ne", lambda w: rule("purchase_count", "ne", 1), ["anna", "boris", "vera"]),
    (
        "spend in window",
        lambda w: rule("total_spend", "gte", 1000, period={"last_days": 31}),
        ["anna"],
    ),
    (
        "low spend in window (none = 0)",
        lambda w: rule("total_spend", "lt", 1000, period={"last_days": 31}),
        ["boris", "gleb", "vera"],
    ),
    ("spend gt", lambda w: rule("total_spend", "gt", "40000"), ["anna"]),
    ("average check gte", lambda w: rule("average_check", "gte", 20000), ["anna", "gleb"]),
    (
        "average check lt (no purchases: none)",
        lambda w: rule("average_check", "lt", 500),
        ["boris"],
    ),
    (
        "last cat-food purchase 25-40 days ago",
        lambda w: rule("days_since_last_purchase", "between", [25, 40], category=[w.cat_food.pk]),
        ["boris"],
    ),
    (
        "last purchase 25-40 days ago",
        lambda w: rule("days_since_last_purchase", "between", [25, 40]),
        [],
    ),
    ("no purchase for 90 days", lambda w: rule("days_since_last_purchase", "gte", 90), ["gleb"]),
    (
        "bought within 10 days",
        lambda w: rule("days_since_last_purchase", "lte", 10),
        ["anna", "boris"],
    ),
    (
        "last purchase exactly 10 days ago",
        lambda w: rule("days_since_last_purchase", "eq", 10),
        ["anna"],
    ),
    (
        "last purchase not 10 days ago",
        lambda w: rule("days_since_last_purchase", "ne", 10),
        ["boris", "gleb"],
    ),
    ("first purchase recent", lambda w: rule("first_purchase", "in_last_days", 50), ["boris"]),
    ("first purchase before", lambda w: rule("first_purchase", "before", "2025-06-01"), ["gleb"]),
    (
        "first purchase after",
        lambda w: rule("first_purchase", "after", "2025-06-01"),
        ["anna", "boris"],
    ),
    (
        "first purchase on a day",
        lambda w: rule("first_purchase", "between", ["2025-11-19", "2025-11-19"]),
        ["anna"],
    ),
    (
        "first purchase long ago",
        lambda w: rule("first_purchase", "more_than_days_ago", 200),
        ["gleb"],
    ),
    # behaviour
    (
        "cart in the last day",
        lambda w: rule("event", "yes", event_type="cart_add", period={"last_hours": 24}),
        ["anna"],
    ),
    (
        "abandoned cart",
        lambda w: rule(
            "event", "yes", event_type="cart_add", period={"last_days": 7}, no_purchase_since=True
        ),
        ["anna"],
    ),
    (
        "cart in a week",
        lambda w: rule("event", "yes", event_type="cart_add", period={"last_days": 7}),
        ["anna", "boris"],
    ),
    (
        "viewed a product",
        lambda w: rule(
            "event",
            "yes",
            event_type="product_view",
            product=[w.laptop.pk],
            period={"last_days": 30},
        ),
        ["boris", "vera"],
    ),
    (
        "viewed in a category",
        lambda w: rule(
            "event",
            "yes",
            event_type="product_view",
            category=[w.electronics.pk],
            period={"last_days": 10},
        ),
        ["boris"],
    ),
    (
        "no cart",
        lambda w: rule("event", "no", event_type="cart_add", period={"last_days": 7}),
        ["gleb", "vera"],
    ),
    # dates: 27 Feb 2026; 2026 has no 29 Feb, so those born on it celebrate on the 28th
    ("birthday today", lambda w: rule("birthday", "in_next_days", 0), []),
    ("birthday tomorrow (29 Feb)", lambda w: rule("birthday", "in_next_days", 1), ["vera"]),
    ("birthday in 2 days", lambda w: rule("birthday", "in_next_days", 2), ["boris", "vera"]),
    (
        "birthday in a year",
        lambda w: rule("birthday", "in_next_days", 366),
        ["anna", "boris", "vera"],
    ),
    ("birthday in May", lambda w: rule("birthday", "in_month", 5), ["anna"]),
    # the remaining operator of each field
    ("attribute gte", lambda w: rule("attribute", "gte", 7, key="score"), ["anna"]),
    ("attribute lt", lambda w: rule("attribute", "lt", 7, key="score"), ["boris"]),
    (
        "average check between",
        lambda w: rule("average_check", "between", [300, 30000]),
        ["anna", "boris"],
    ),
    ("average check eq", lambda w: rule("average_check", "eq", 40000), ["gleb"]),
    ("average check gt", lambda w: rule("average_check", "gt", 30000), ["gleb"]),
    ("average check lte", lambda w: rule("average_check", "lte", "25750"), ["anna", "boris"]),
    ("average check ne", lambda w: rule("average_check", "ne", 40000), ["anna", "boris"]),
    (
        "not bought brand",
        lambda w: rule("bought_brand", "none_of", [w.whiskas.pk]),
        ["boris", "gleb", "vera"],
    ),
    ("child age gte", lambda w: rule("child_age", "gte", 8), ["anna"]),
    ("child age lt", lambda w: rule("child_age", "lt", 8), []),
    ("child age lte", lambda w: rule("child_age", "lte", 8), ["anna"]),
    ("days since gt", lambda w: rule("days_since_last_purchase", "gt", 10), ["gleb"]),
    ("days since lt", lambda w: rule("days_since_last_purchase", "lt", 10), ["boris"]),
    (
        "education not in",
        lambda w: rule("education", "not_in", ["higher"]),
        ["boris", "gleb", "vera"],
    ),
    (
        "lifetime between",
        lambda w: rule("lifetime_spend", "between", [1000, 45000]),
        ["boris", "gleb"],
    ),
    ("lifetime gt", lambda w: rule("lifetime_spend", "gt", 50000), ["anna"]),
    ("lifetime lte", lambda w: rule("lifetime_spend", "lte", 1100), ["boris", "vera"]),
    ("lifetime ne", lambda w: rule("lifetime_spend", "ne", 0), ["anna", "boris", "gleb"]),
    ("occupation empty", lambda w: rule("occupation", "is_empty"), ["gleb", "vera"]),
    ("occupation filled", lambda w: rule("occupation", "is_not_empty"), ["anna", "boris"]),
    (
        "occupation not in",
        lambda w: rule("occupation", "not_in", ["водитель"]),
        ["anna", "gleb", "vera"],
    ),
    ("balance between", lambda w: rule("points_balance", "between", [0, 100]), ["boris"]),
    ("balance gt", lambda w: rule("points_balance", "gt", 0), ["anna"]),
    ("balance lte", lambda w: rule("points_balance", "lte", 500), ["anna", "boris"]),
    ("balance ne", lambda w: rule("points_balance", "ne", 0), ["anna"]),
    (
        "channel not in",
        lambda w: rule("preferred_channel", "not_in", ["sms"]),
        ["boris", "gleb", "vera"],
    ),
    ("purchase count gt", lambda w: rule("purchase_count", "gt", 2), ["boris"]),
    ("purchase count lte", lambda w: rule("purchase_count", "lte", 1), ["gleb", "vera"]),
    ("region contains", lambda w: rule("region", "contains", "Адмирал"), ["vera"]),
    ("region empty", lambda w: rule("region", "is_empty"), ["boris", "gleb"]),
    ("region filled", lambda w: rule("region", "is_not_empty"), ["anna", "vera"]),
    (
        "region not in",
        lambda w: rule("region", "not_in", ["Центральный"]),
        ["boris", "gleb", "vera"],
    ),
    ("rolling eq", lambda w: rule("rolling_spend", "eq", 900), ["boris"]),
    ("rolling gte", lambda w: rule("rolling_spend", "gte", "900.00"), ["anna", "boris"]),
    ("rolling lt", lambda w: rule("rolling_spend", "lt", 900), []),
    ("rolling lte", lambda w: rule("rolling_spend", "lte", 900), ["boris"]),
    ("rolling ne", lambda w: rule("rolling_spend", "ne", 900), ["anna"]),
    ("source not in", lambda w: rule("source", "not_in", ["web"]), ["boris", "gleb", "vera"]),
    (
        "time zone not in",
        lambda w: rule("time_zone", "not_in", ["Asia/Yekaterinburg"]),
        ["anna", "gleb", "vera"],
    ),
    ("spend between", lambda w: rule("total_spend", "between", [1000, 2000]), ["boris"]),
    ("spend eq 0", lambda w: rule("total_spend", "eq", 0), ["vera"]),
    ("spend lte", lambda w: rule("total_spend", "lte", "1100"), ["boris", "vera"]),
    ("spend ne 0", lambda w: rule("total_spend", "ne", 0), ["anna", "boris", "gleb"]),
]


@pytest.mark.parametrize(("case", "make", "expected"), CASES, ids=[c[0] for c in CASES])
def test_each_field_and_operator(
    world: World, case: str, make: Callable[[World], dict[str, Any]], expected: list[str]
) -> None:
    assert matching(only(make(world))) == expected


def test_every_catalog_field_and_operator_has_a_case(world: World) -> None:
    from segments.catalog import FIELDS

    tested = {(r["field"], r["operator"]) for r in (make(world) for _c, make, _e in CASES)}
    tested |= {("segment", "any_of"), ("segment", "none_of")}  # the segment tests below
    wanted = {(key, op) for key, spec in FIELDS.items() for op in spec.operators}
    assert wanted - tested == set()


def test_rule_negation_is_the_complement(world: World) -> None:
    negated = {**rule("city", "in", [SPB]), "negate": True}
    assert matching(only(negated)) == ["boris", "gleb"]
    negated_age = {**rule("age", "gte", 35), "negate": True}
    assert matching(only(negated_age)) == ["gleb", "vera"]  # unknown age is outside "age >= 35"


def test_nested_groups_with_negation(world: World) -> None:
    tree = {
        "match": "any",
        "rules": [
            {
                "match": "all",
                "rules": [rule("gender", "in", ["f"]), rule("city", "in", [SPB])],
                "negate": True,
            },
            {
                "match": "all",
                "rules": [rule("has_children", "yes"), rule("pets", "any_of", ["cat"])],
            },
        ],
    }
    # NOT (woman in SPb) -> boris, gleb; OR (children and a cat) -> anna
    assert matching(tree) == ["anna", "boris", "gleb"]


def test_empty_groups_match_everyone_and_negated_nobody(world: World) -> None:
    assert matching({"match": "all", "rules": []}) == ["anna", "boris", "gleb", "vera"]
    assert matching(
        {"match": "any", "rules": [{"match": "all", "rules": []}, rule("age", "eq", 1)]}
    ) == [
        "anna",
        "boris",
        "gleb",
        "vera",
    ]
    assert matching({"match": "all", "rules": [], "negate": True}) == []


def test_anonymized_clients_are_never_members(world: World) -> None:
    assert "zed" not in matching(only(rule("bought_brand", "any_of", [world.whiskas.pk])))


def test_birthday_wraps_the_year(world: World) -> None:
    Client.objects.create(external_id="jan1", birth_date=dt.date(1999, 1, 1))
    Client.objects.create(external_id="jan3", birth_date=dt.date(1999, 1, 3))
    Client.objects.create(external_id="dec31", birth_date=dt.date(1999, 12, 31))
    new_year_eve = dt.datetime(2025, 12, 30, 23, 0, tzinfo=MSK)
    assert matching(only(rule("birthday", "in_next_days", 3)), now=new_year_eve) == [
        "dec31",
        "jan1",
    ]


def test_birthday_on_29_february_in_a_leap_year(world: World) -> None:
    leap = dt.datetime(2028, 2, 28, 10, 0, tzinfo=MSK)
    assert matching(only(rule("birthday", "in_next_days", 0)), now=leap) == []
    assert matching(only(rule("birthday", "in_next_days", 1)), now=leap) == ["vera"]
    assert matching(only(rule("age", "eq", 27)), now=leap) == ["vera"]
    assert matching(only(rule("age", "eq", 28)), now=leap + dt.timedelta(days=1)) == ["vera"]


def test_membership_of_rule_and_static_segments(world: World) -> None:
    spb = Segment.objects.create(name="SPb", rules=only(rule("city", "in", [SPB])))
    chosen = Segment.objects.create(name="Chosen", kind="static")
    SegmentMember.objects.create(segment=chosen, client=world.boris, added_at=NOW)

    assert matching(only(rule("segment", "any_of", [spb.pk]))) == ["anna", "vera"]
    assert matching(only(rule("segment", "none_of", [spb.pk]))) == ["boris", "gleb"]
    assert matching(only(rule("segment", "any_of", [spb.pk, chosen.pk]))) == [
        "anna",
        "boris",
        "vera",
    ]


def test_segment_inside_segment_inside_segment(world: World) -> None:
    women = Segment.objects.create(name="Women", rules=only(rule("gender", "in", ["f"])))
    spb_women = Segment.objects.create(
        name="SPb women",
        rules={
            "match": "all",
            "rules": [rule("segment", "any_of", [women.pk]), rule("city", "in", [SPB])],
        },
    )
    assert matching(
        {
            "match": "all",
            "rules": [rule("segment", "any_of", [spb_women.pk]), rule("age", "lt", 30)],
        }
    ) == ["vera"]


def test_one_query_regardless_of_rules_and_data(
    world: World, django_assert_max_num_queries: Any
) -> None:
    tree = validate_rules(
        {
            "match": "all",
            "rules": [
                rule("gender", "in", ["f"]),
                rule("bought_category", "any_of", [world.pets.pk], period={"last_days": 90}),
                rule("consent", "yes", channel="sms"),
                rule("purchase_count", "gte", 2),
                {"match": "any", "negate": True, "rules": [rule("tier", "in", [world.silver.pk])]},
            ],
        }
    )
    with django_assert_max_num_queries(1):
        assert list(compile_rules(tree, now=NOW).values_list("external_id", flat=True)) == ["anna"]


def test_aggregates_next_to_other_conditions_are_probed_per_client(world: World) -> None:
    """The per-client form (used next to other conditions) agrees with the grouped form."""
    spb = rule("city", "in", [SPB])
    cases = [
        (rule("total_spend", "gte", 1000), ["anna"]),
        (rule("purchase_count", "lt", 2), ["vera"]),
        (rule("average_check", "gte", 20000), ["anna"]),
        (rule("lifetime_spend", "eq", 0), ["vera"]),
        (rule("purchase_count", "between", [2, 5], period={"last_days": 365}), ["anna"]),
    ]
    for aggregate, expected in cases:
        assert matching({"match": "all", "rules": [spb, aggregate]}) == expected, aggregate
        alone = set(matching(only(aggregate)))
        assert set(expected) == alone & {"anna", "vera"}


def test_negations_are_pushed_down_to_the_rules(world: World) -> None:
    from segments.compiler import negation_normal_form

    tree = {
        "match": "any",
        "negate": True,
        "rules": [
            rule("tier", "in", [world.gold.pk]),
            {**rule("consent", "yes", channel="sms"), "negate": False},
            {"match": "all", "rules": [rule("age", "gte", 30), rule("city", "in", [SPB])]},
        ],
    }
    assert negation_normal_form(tree) == {
        "match": "all",
        "negate": False,
        "rules": [
            {**rule("tier", "not_in", [world.gold.pk]), "negate": False},
            {**rule("consent", "no", channel="sms"), "negate": False},
            {
                "match": "any",
                "negate": False,
                "rules": [
                    {**rule("age", "gte", 30), "negate": True},
                    {**rule("city", "not_in", [SPB]), "negate": False},
                ],
            },
        ],
    }
    # NOT (gold OR SMS consent OR (30+ and in SPb)): anna is gold (and has consent); boris
    # withdrew his, lives in Moscow; gleb's age is unknown; vera is 25.
    assert matching(tree) == ["boris", "gleb", "vera"]


def compiled_sql(tree: dict[str, Any]) -> str:
    sql, _params = compile_rules(validate_rules(tree), now=NOW).values("pk").query.sql_with_params()
    return sql.upper()


def test_alternatives_with_subqueries_are_a_union_of_client_ids(world: World) -> None:
    """An OR over EXISTS is run per client by PostgreSQL; the compiler distributes the AND over
    the OR and makes each alternative a query of its own (its EXISTS are joins again), then
    unions their ids."""
    tree = {
        "match": "all",
        "rules": [
            {
                "match": "any",
                "rules": [
                    {
                        "match": "all",
                        "rules": [
                            rule("bought_category", "any_of", [world.pets.pk]),
                            rule("pets", "any_of", ["dog"]),
                        ],
                    },
                    rule("has_children", "yes"),
                    rule("city", "in", ["Казань"]),
                    rule("age", "lt", 26),
                ],
            },
            {"match": "any", "negate": True, "rules": [rule("tier", "in", [world.gold.pk])]},
        ],
    }
    sql = compiled_sql(tree)
    # (pets and dog), children, Kazan, under 26: each alternative with "not gold"
    assert sql.count("UNION") == 3
    assert sql.count('FROM "LOYALTY_LOYALTYACCOUNT"') == 4
    # boris: a dog and own-label cat food (pets); anna has a child but is gold; vera is 25.
    assert matching(tree) == ["boris", "vera"]


def test_alternatives_on_the_client_row_stay_an_or(world: World) -> None:
    tree = {"match": "any", "rules": [rule("city", "in", [SPB]), rule("age", "gt", 35)]}
    assert "UNION" not in compiled_sql(tree)
    assert matching(tree) == ["anna", "boris", "vera"]


def test_a_lone_alternative_with_a_subquery_is_no_union(world: World) -> None:
    tree = {"match": "any", "rules": [rule("has_children", "yes")]}
    assert "UNION" not in compiled_sql(tree)
    assert matching(tree) == ["anna"]


def test_aggregates_inside_alternatives_are_not_narrowed_by_conditions_outside(
    world: World,
) -> None:
    """Next to other conditions an aggregate is probed per client; in a union alternative
    nothing outside narrows it, and both forms give the same clients."""
    tree = {
        "match": "all",
        "rules": [
            rule("city", "in", [SPB, "Москва"]),
            {
                "match": "any",
                "rules": [rule("purchase_count", "gte", 2), rule("has_children", "yes")],
            },
        ],
    }
    assert "UNION" in compiled_sql(tree)
    # anna: two purchases and a child; boris: three purchases; vera: neither.
    assert matching(tree) == ["anna", "boris"]


def test_alternatives_only_on_the_client_row_are_one_alternative(world: World) -> None:
    tree = {
        "match": "any",
        "rules": [
            rule("city", "in", ["Казань"]),
            rule("age", "lt", 26),
            rule("has_children", "yes"),
        ],
    }
    assert compiled_sql(tree).count("UNION") == 1  # (Kazan or under 26), children
    assert matching(tree) == ["anna", "vera"]


def test_too_many_alternatives_stay_nested(world: World) -> None:
    """Distributing ANDs over ORs multiplies alternatives; past the limit each OR is a union
    of its own, inside the AND."""
    pair = {
        "match": "any",
        "rules": [rule("has_children", "yes"), rule("pets", "any_of", ["dog"])],
    }
    tree = {"match": "all", "rules": [pair, pair, pair, pair]}  # 16 alternatives
    assert compiled_sql(tree).count("UNION") == 4
    assert matching(tree) == ["anna", "boris"]


def test_a_segment_excluded_by_none_of_is_never_a_union(world: World) -> None:
    """NOT IN (union) is no anti-join: a segment under "none of" keeps its ORs on the row."""
    either = Segment.objects.create(
        name="Children or a dog",
        rules={
            "match": "any",
            "rules": [rule("has_children", "yes"), rule("pets", "any_of", ["dog"])],
        },
    )
    assert "UNION" in compiled_sql(only(rule("segment", "any_of", [either.pk])))
    excluded = only(rule("segment", "none_of", [either.pk]))
    assert "UNION" not in compiled_sql(excluded)
    assert matching(excluded) == ["gleb", "vera"]


def test_long_purchase_windows_next_to_row_conditions_are_probed_per_client(
    world: World,
) -> None:
    """Next to two conditions on the client row, "bought ... in a long window" is a per-client
    probe (EXISTS .. OFFSET 0, which PostgreSQL does not turn into a join); alone, or over a
    short window, it stays a join. The clients are the same either way."""
    long_pets = rule("bought_category", "any_of", [world.pets.pk], period={"last_days": 180})
    short_pets = rule("bought_category", "any_of", [world.pets.pk], period={"last_days": 14})
    no_own_label = rule("bought_private_label", "no", period={"last_days": 365})
    in_cities = rule("city", "in", [SPB, "Москва"])
    adults = rule("age", "gte", 18)

    probed = {"match": "all", "rules": [in_cities, adults, long_pets, no_own_label]}
    assert compiled_sql(probed).count("OFFSET 0") == 2
    # anna: Whiskas 10 days ago; boris bought own-label cat food (pets) in the year.
    assert matching(probed) == ["anna"]
    assert matching({"match": "all", "rules": [long_pets, no_own_label]}) == ["anna"]

    # One condition on the row is too weak a filter to probe behind.
    one_row_rule = {"match": "all", "rules": [in_cities, long_pets, no_own_label]}
    assert "OFFSET" not in compiled_sql(one_row_rule)
    assert matching(one_row_rule) == ["anna"]

    assert "OFFSET" not in compiled_sql(only(long_pets))
    assert "OFFSET" not in compiled_sql(
        {"match": "all", "rules": [long_pets, rule("consent", "yes", channel="sms")]}
    )
    short = {"match": "all", "rules": [in_cities, adults, short_pets]}
    assert "OFFSET" not in compiled_sql(short)
    assert matching(short) == ["anna", "boris"]  # Whiskas 10 days ago; a dog toy yesterday
