"""Rule trees: validation errors name the wrong rule; explanations read like sentences."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import translation

from segments.models import Segment
from segments.rules import RulesError, explain_rules, validate_rules
from tests.segments.conftest import World

pytestmark = pytest.mark.django_db


def errors(rules: Any, **kwargs: Any) -> list[tuple[str, str]]:
    with pytest.raises(RulesError) as caught:
        validate_rules(rules, **kwargs)
    return caught.value.errors


def test_a_valid_tree_is_normalized() -> None:
    tree = validate_rules(
        {
            "match": "any",
            "rules": [
                {"field": "age", "operator": "between", "value": ["30", 40]},
                {
                    "match": "all",
                    "negate": True,
                    "rules": [{"field": "city", "operator": "in", "value": "Москва"}],
                },
                {"field": "total_spend", "operator": "gte", "value": "1 000".replace(" ", "")},
            ],
        }
    )
    assert tree == {
        "match": "any",
        "negate": False,
        "rules": [
            {"field": "age", "operator": "between", "value": [30, 40], "negate": False},
            {
                "match": "all",
                "negate": True,
                "rules": [
                    {"field": "city", "operator": "in", "value": ["Москва"], "negate": False}
                ],
            },
            {"field": "total_spend", "operator": "gte", "value": "1000", "negate": False},
        ],
    }


def test_errors_name_the_path_of_each_wrong_rule() -> None:
    found = errors(
        {
            "match": "all",
            "rules": [
                {"field": "age", "operator": "gte", "value": 30},
                {"field": "shoe_size", "operator": "eq", "value": 42},
                {"field": "age", "operator": "gte", "value": "old"},
                {
                    "match": "whatever",
                    "rules": [
                        {"field": "gender", "operator": "in", "value": ["x"]},
                        {"field": "city", "operator": "like", "value": "M"},
                    ],
                },
                {
                    "field": "bought_brand",
                    "operator": "any_of",
                    "value": [1],
                    "period": {"last_days": 0},
                },
                {"field": "consent", "operator": "yes"},
                {"field": "age", "operator": "between", "value": [40, 30]},
                {"field": "has_children", "operator": "yes", "value": 3},
                {"field": "attribute", "operator": "eq", "value": "x", "key": "bad key"},
            ],
        }
    )
    paths = [path for path, _message in found]
    assert paths == [
        "rules[1].field",
        "rules[2].value",
        "rules[3].match",
        "rules[3].rules[0].value[0]",
        "rules[3].rules[1].operator",
        "rules[4].period.last_days",
        "rules[5].channel",
        "rules[6].value",
        "rules[7].value",
        "rules[8].key",
    ]
    assert "unknown field 'shoe_size'" in dict(found)["rules[1].field"]
    assert "whole number" in dict(found)["rules[2].value"]
    with pytest.raises(RulesError) as caught:
        validate_rules(
            {"match": "all", "rules": [{"field": "age", "operator": "gte", "value": "old"}]}
        )
    assert caught.value.messages == ["rules[0].value: expected a whole number"]


def test_unknown_references_are_errors(world: World) -> None:
    found = errors(
        {
            "match": "all",
            "rules": [
                {
                    "field": "bought_category",
                    "operator": "any_of",
                    "value": [world.pets.pk, 999999],
                },
                {"field": "tier", "operator": "in", "value": [world.gold.pk]},
            ],
        }
    )
    assert found == [("rules[0].value[1]", "no category with id 999999")]


def test_a_segment_cannot_refer_to_itself_through_others(world: World) -> None:
    a = Segment.objects.create(name="A", rules={"match": "all", "rules": []})
    b = Segment.objects.create(
        name="B",
        rules={
            "match": "all",
            "rules": [{"field": "segment", "operator": "any_of", "value": [a.pk]}],
        },
    )
    cycle = {"match": "all", "rules": [{"field": "segment", "operator": "any_of", "value": [b.pk]}]}
    assert errors(cycle, segment_id=a.pk) == [
        ("rules[0].value[0]", f"segment {b.pk} refers back to this segment (a cycle)")
    ]
    assert errors(
        {"match": "all", "rules": [{"field": "segment", "operator": "any_of", "value": [a.pk]}]},
        segment_id=a.pk,
    )
    assert validate_rules(cycle, segment_id=None)  # a new segment cannot be referred to yet


def test_the_root_must_be_a_group() -> None:
    assert errors([{"field": "age"}])[0][0] == ""
    assert errors({"field": "age", "operator": "eq", "value": 1})[0][0] == ""


def test_explanation_in_english_and_russian(world: World) -> None:
    tree = validate_rules(
        {
            "match": "all",
            "rules": [
                {
                    "field": "bought_category",
                    "operator": "any_of",
                    "value": [world.cat_food.pk],
                    "period": {"last_days": 30},
                },
                {"field": "consent", "operator": "yes", "channel": "sms"},
                {
                    "match": "any",
                    "rules": [
                        {"field": "gender", "operator": "in", "value": ["f"]},
                        {"field": "age", "operator": "between", "value": [30, 40]},
                    ],
                },
                {"field": "tier", "operator": "in", "value": [world.gold.pk], "negate": True},
            ],
        }
    )
    with translation.override("en"):
        assert explain_rules(tree) == (
            "bought in category «Cat food» in the last 30 days AND has a valid consent "
            "(SMS, marketing) AND (gender is female OR age is between 30 and 40) "
            "AND NOT loyalty tier is «Gold»"
        )
    with translation.override("ru"):
        text = explain_rules(tree)
    assert "«Cat food»" in text and "«Gold»" in text
    assert explain_rules({"match": "all", "rules": []}) in ("all clients", "все клиенты")
