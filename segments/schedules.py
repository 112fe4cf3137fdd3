"""Segments' periodic tasks, upserted into django-celery-beat by ``manage.py setup_schedules``."""

from django.utils.translation import gettext_lazy as _

from crm.schedules import Schedule

SCHEDULES = [
    Schedule(
        name="segments: refresh marked segments",
        task="segments.tasks.refresh_marked_segments",
        crontab={"minute": "15"},
        queue="segments",
        description=_("Recompute the membership snapshot of segments marked for it, hourly."),
    ),
]
