"""Offers' periodic tasks, upserted into django-celery-beat by ``manage.py setup_schedules``."""

from django.utils.translation import gettext_lazy as _

from crm.schedules import Schedule

SCHEDULES = [
    Schedule(
        name="offers: mine product associations",
        task="offers.tasks.mine_associations",
        crontab={"minute": "40", "hour": "3"},
        queue="default",
        description=_(
            "Nightly: which categories clients buy together or soon after each other "
            "(support, confidence, lift), for the marketer to accept or reject."
        ),
    ),
]
