"""Segment services: saving with validation, snapshots with size history, static lists, tasks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import pytest

from crm.models import Client
from segments import tasks
from segments.models import Segment, SegmentMember, SegmentSizeHistory
from segments.rules import RulesError
from segments.schedules import SCHEDULES
from segments.selectors import segment_clients, segment_count
from segments.services import (
    segment_add_clients,
    segment_import_static,
    segment_refresh_membership,
    segment_remove_clients,
    segment_save,
)
from tests.segments.conftest import NOW, World, ago

pytestmark = pytest.mark.django_db

SPB = {"match": "all", "rules": [{"field": "city", "operator": "in", "value": ["Санкт-Петербург"]}]}


def members(segment: Segment) -> list[str]:
    external_ids = SegmentMember.objects.filter(segment=segment).values_list(
        "client__external_id", flat=True
    )
    return sorted(cast("Iterable[str]", external_ids))  # every client here has an external ID


def test_save_validates_and_normalizes_rules(world: World) -> None:
    segment = segment_save(segment=Segment(name="SPb"), rules=SPB)
    assert segment.pk is not None
    assert segment.rules["rules"][0]["negate"] is False
    with pytest.raises(RulesError):
        segment_save(segment=segment, rules={"match": "all", "rules": [{"field": "nope"}]})


def test_refresh_writes_members_and_history_and_follows_changes(
    world: World, django_assert_max_num_queries: Any
) -> None:
    segment = segment_save(segment=Segment(name="SPb"), rules=SPB)

    with django_assert_max_num_queries(10):
        first = segment_refresh_membership(segment=segment, now=NOW)

    assert (first.size, first.added, first.removed) == (2, 2, 0)
    assert members(segment) == ["anna", "vera"]
    Client.objects.filter(pk=world.vera.pk).update(city="Москва")
    Client.objects.filter(pk=world.boris.pk).update(city="Санкт-Петербург")

    second = segment_refresh_membership(segment=segment.pk, now=ago(minutes=-5))

    assert (second.size, second.added, second.removed) == (2, 1, 1)
    assert members(segment) == ["anna", "boris"]
    segment.refresh_from_db()
    assert segment.member_count == 2 and segment.refreshed_at == ago(minutes=-5)
    history = list(SegmentSizeHistory.objects.filter(segment=segment).order_by("measured_at"))
    assert [(h.size, h.added, h.removed) for h in history] == [(2, 2, 0), (2, 1, 1)]


def test_refresh_of_alternatives_over_subqueries_writes_the_union(
    world: World, django_assert_max_num_queries: Any
) -> None:
    """ORs over subqueries compile to ``id IN (.. UNION ..)``; the snapshot's DELETE and
    INSERT .. SELECT take that query as they take any other."""
    rules = {
        "match": "all",
        "rules": [
            {
                "match": "any",
                "rules": [
                    {"field": "has_children", "operator": "yes"},
                    {"field": "pets", "operator": "any_of", "value": ["dog"]},
                ],
            },
            {"field": "city", "operator": "in", "value": ["Санкт-Петербург", "Москва"]},
        ],
    }
    segment = segment_save(segment=Segment(name="Children or a dog"), rules=rules)

    with django_assert_max_num_queries(10):
        first = segment_refresh_membership(segment=segment, now=NOW)

    assert (first.size, first.added, first.removed) == (2, 2, 0)
    assert members(segment) == ["anna", "boris"]  # a child in SPb; a dog in Moscow
    Client.objects.filter(pk=world.boris.pk).update(city="")
    second = segment_refresh_membership(segment=segment, now=ago(minutes=-5))
    assert (second.size, second.added, second.removed) == (1, 0, 1)
    assert members(segment) == ["anna"]


def test_refresh_is_idempotent_and_bounded_in_queries(
    world: World, django_assert_max_num_queries: Any
) -> None:
    segment = segment_save(segment=Segment(name="All"), rules={"match": "all", "rules": []})
    segment_refresh_membership(segment=segment, now=NOW)
    Client.objects.bulk_create(Client(external_id=f"x{i}") for i in range(50))
    with django_assert_max_num_queries(10):
        result = segment_refresh_membership(segment=segment, now=NOW)
    assert (result.size, result.added, result.removed) == (54, 50, 0)
    again = segment_refresh_membership(segment=segment, now=NOW)
    assert (again.size, again.added, again.removed) == (54, 0, 0)


def test_static_segment_add_remove_and_anonymized_skipped(world: World) -> None:
    segment = segment_save(segment=Segment(name="VIP", kind="static"))

    added = segment_add_clients(
        segment=segment, clients=Client.objects.filter(source__in=["web", "store"])
    )
    assert added == 2
    assert segment_add_clients(segment=segment, clients=[world.anna.pk, world.zed.pk]) == 0
    assert members(segment) == ["anna", "boris"]
    assert segment.member_count == 2
    external_ids = segment_clients(segment=segment).values_list("external_id", flat=True)
    assert sorted(cast("Iterable[str]", external_ids)) == [
        "anna",
        "boris",
    ]
    assert segment_remove_clients(segment=segment, client_ids=[world.boris.pk]) == 1
    assert segment_count(segment=segment) == 1
    assert segment_refresh_membership(segment=segment).size == 1  # the list is the membership


def test_rule_segments_take_no_hand_picked_clients(world: World) -> None:
    segment = segment_save(segment=Segment(name="SPb"), rules=SPB)
    with pytest.raises(Exception, match="static"):
        segment_add_clients(segment=segment, clients=[world.anna.pk])


def test_import_static_list_from_phones_emails_and_external_ids(world: World) -> None:
    segment = segment_save(segment=Segment(name="Imported", kind="static"))
    text = "8 (916) 111-22-33\nVERA@example.ru;x\ngleb\nunknown@example.ru\n+7 999\n\n"

    result = segment_import_static(segment=segment, text=text)

    assert (result.lines, result.matched, result.added) == (5, 3, 3)
    assert sorted(result.not_found) == ["+7 999", "unknown@example.ru"]
    assert members(segment) == ["anna", "gleb", "vera"]


def test_periodic_task_refreshes_marked_segments(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    marked = segment_save(segment=Segment(name="SPb", auto_refresh=True), rules=SPB)
    segment_save(segment=Segment(name="Manual"), rules=SPB)
    from unittest import mock

    with (
        mock.patch.object(tasks.refresh_segment, "delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert tasks.refresh_marked_segments() == 1
    delay.assert_called_once_with(marked.pk)
    assert tasks.refresh_segment(marked.pk) == 2
    assert [s.task for s in SCHEDULES] == ["segments.tasks.refresh_marked_segments"]
