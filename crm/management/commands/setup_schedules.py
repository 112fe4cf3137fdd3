"""Upsert the schedules declared in code (each app's ``schedules.py``) into django-celery-beat."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from crm.schedules import Schedule, collect_schedules


class Command(BaseCommand):
    help = (
        "Create or update the periodic tasks declared in each app's schedules.py, by name. "
        "The code owns a task's path, arguments, queue, description and crontab (in TIME_ZONE); "
        "staff own 'enabled': a new task is created enabled, and an existing one keeps the "
        "enabled flag set in the admin, so a task paused there stays paused. Idempotent. "
        "Periodic tasks not declared in code are left alone."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        from crm.celery import app

        schedules = collect_schedules()
        app.loader.import_default_modules()
        unknown = [s.task for s in schedules if s.task not in app.tasks]
        if unknown:
            raise CommandError(f"Schedules name unregistered tasks: {unknown}")
        with transaction.atomic():
            for schedule in schedules:
                outcome = self._upsert(schedule)
                self.stdout.write(f"{outcome}: {schedule.name}")

    def _upsert(self, schedule: Schedule) -> str:
        crontab, _ = CrontabSchedule.objects.get_or_create(
            **schedule.crontab_fields(), timezone=settings.TIME_ZONE
        )
        wanted = {
            "task": schedule.task,
            "crontab_id": crontab.id,
            "interval_id": None,
            "solar_id": None,
            "clocked_id": None,
            "kwargs": json.dumps(schedule.kwargs, sort_keys=True),
            "queue": schedule.queue,
            "description": str(schedule.description),
        }
        task = PeriodicTask.objects.filter(name=schedule.name).first()
        if task is None:
            PeriodicTask.objects.create(name=schedule.name, enabled=True, **wanted)
            return "created"
        changed = [name for name, value in wanted.items() if getattr(task, name) != value]
        if not changed:
            return "unchanged"
        for name in changed:
            setattr(task, name, wanted[name])
        task.save()
        return "updated"
