"""manage.py setup_schedules: schedules declared in code, upserted into django-celery-beat."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from crm.schedules import collect_schedules

pytestmark = pytest.mark.django_db

LOYALTY = {
    "loyalty: accrue pending points": ("loyalty.tasks.accrue_points", "*/10", "*"),
    "loyalty: expire points": ("loyalty.tasks.expire_points", "30", "2"),
    "loyalty: recompute tiers": ("loyalty.tasks.recompute_tiers", "0", "3"),
}


def rows() -> list[tuple]:
    return list(
        PeriodicTask.objects.order_by("name").values_list(
            "id",
            "name",
            "task",
            "kwargs",
            "queue",
            "enabled",
            "crontab__minute",
            "crontab__hour",
            "crontab__day_of_week",
            "crontab__timezone",
        )
    )


def run() -> str:
    out = StringIO()
    call_command("setup_schedules", stdout=out)
    return out.getvalue()


def test_collects_the_loyalty_schedules():
    names = [s.name for s in collect_schedules()]
    assert set(LOYALTY) <= set(names)
    assert len(names) == len(set(names))


def test_creates_the_declared_tasks_in_moscow_time():
    # when
    out = run()

    # then
    by_name = {row[1]: row for row in rows()}
    assert set(LOYALTY) <= set(by_name)
    assert len(by_name) == len(collect_schedules())
    for name, (task, minute, hour) in LOYALTY.items():
        _, _, got_task, kwargs, queue, enabled, got_minute, got_hour, dow, tz = by_name[name]
        assert (got_task, json.loads(kwargs), queue, enabled) == (task, {}, "default", True)
        assert (got_minute, got_hour, dow, str(tz)) == (minute, hour, "*", "Europe/Moscow")
        assert f"created: {name}" in out


def test_running_twice_changes_nothing():
    # given
    run()
    before = rows()
    crontabs = CrontabSchedule.objects.count()

    # when
    out = run()

    # then
    assert rows() == before
    assert CrontabSchedule.objects.count() == crontabs
    assert "created" not in out and "updated" not in out


def test_a_task_paused_by_staff_stays_paused_while_code_fields_are_restored():
    # given staff paused a task, and its task path was edited by hand
    run()
    PeriodicTask.objects.filter(name="loyalty: expire points").update(
        enabled=False, task="something.else"
    )

    # when
    out = run()

    # then
    task = PeriodicTask.objects.get(name="loyalty: expire points")
    assert (task.enabled, task.task) == (False, "loyalty.tasks.expire_points")
    assert "updated: loyalty: expire points" in out
    assert PeriodicTask.objects.filter(enabled=False).count() == 1
