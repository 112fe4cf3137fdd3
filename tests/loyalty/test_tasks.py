"""loyalty.tasks: thin wrappers, enqueued after commit."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import OperationalError

from loyalty import tasks
from loyalty.models import LoyaltyAccount

pytestmark = pytest.mark.django_db


def test_accrue_task_runs_the_service(tiers, make_client, make_purchase):
    client = make_client()
    purchase = make_purchase(client, "1500")

    assert tasks.accrue_points.apply(kwargs={"purchase_ids": [purchase.id]}).get() == 1
    assert LoyaltyAccount.objects.get().balance == 15


def test_expire_and_recompute_tasks_accept_an_iso_time(tiers, make_client, now):
    LoyaltyAccount.objects.create(client=make_client(), tier=tiers["gold"])

    assert tasks.expire_points.apply(kwargs={"at": now.isoformat()}).get() == 0
    assert tasks.recompute_tiers.apply(kwargs={"at": now.isoformat()}).get() == {
        "Base": 1,
        "Silver": 0,
        "Gold": 0,
    }


def test_tasks_are_bounded_and_retry_only_operational_errors():
    for task in (tasks.accrue_points, tasks.expire_points, tasks.recompute_tiers):
        assert task.time_limit and task.soft_time_limit < task.time_limit
        assert task.autoretry_for == (OperationalError,)
        assert task.max_retries == 5


def test_enqueue_waits_for_commit_and_chunks(django_capture_on_commit_callbacks):
    with mock.patch.object(tasks.accrue_points, "apply_async") as send:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            tasks.accrue_points_enqueue(purchase_ids=[5, 3, 1, 3, 2], chunk_size=2)
        assert send.call_count == 0

        for callback in callbacks:
            callback()

    assert [c.kwargs for c in send.call_args_list] == [
        {"kwargs": {"purchase_ids": [1, 2]}, "queue": "default"},
        {"kwargs": {"purchase_ids": [3, 5]}, "queue": "default"},
    ]
