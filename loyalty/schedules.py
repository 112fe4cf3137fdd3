"""Loyalty's periodic tasks, upserted into django-celery-beat by ``manage.py setup_schedules``."""

from django.utils.translation import gettext_lazy as _

from crm.schedules import Schedule

SCHEDULES = [
    Schedule(
        name="loyalty: accrue pending points",
        task="loyalty.tasks.accrue_points",
        crontab={"minute": "*/10"},
        description=_("Earn points for purchases that have none yet."),
    ),
    Schedule(
        name="loyalty: expire points",
        task="loyalty.tasks.expire_points",
        crontab={"minute": "30", "hour": "2"},
        description=_("Expire points past their lifetime, oldest first."),
    ),
    Schedule(
        name="loyalty: recompute tiers",
        task="loyalty.tasks.recompute_tiers",
        crontab={"minute": "0", "hour": "3"},
        description=_("Recompute rolling spend and every account's tier."),
    ),
]
