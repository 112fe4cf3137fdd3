"""Each app's tasks land on the queue named for its workload."""

from __future__ import annotations

import pytest

from crm.celery import app


@pytest.mark.parametrize(
    ("task_name", "queue"),
    [
        ("segments.tasks.refresh_segment", "segments"),
        ("loyalty.tasks.accrue_points", "default"),
        ("offers.tasks.mine_associations", "default"),
    ],
)
def test_task_routes(task_name: str, queue: str) -> None:
    app.loader.import_default_modules()
    assert task_name in app.tasks, sorted(t for t in app.tasks if not t.startswith("celery."))
    route = app.amqp.router.route({}, task_name)
    assert route["queue"].name == queue
