"""Messaging's periodic tasks, upserted into django-celery-beat by ``manage.py setup_schedules``."""

from django.utils.translation import gettext_lazy as _

from crm.schedules import Schedule

SCHEDULES = [
    Schedule(
        name="messaging: dispatch due messages",
        task="messaging.tasks.dispatch.dispatch_messages",
        crontab={},
        queue="messaging",
        description=_(
            "Every minute: sends the messages whose time has come, re-checking consent, expiry "
            "and quiet hours; settles messages left by a crashed worker."
        ),
    ),
]
