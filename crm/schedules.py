"""Periodic schedules declared in code.

Each installed app may have a ``schedules.py`` with a ``SCHEDULES`` list of ``Schedule``;
``manage.py setup_schedules`` upserts them by name into django-celery-beat, where staff can see,
pause and run them. Crontab times are in ``settings.TIME_ZONE``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import module_has_submodule
from django.utils.translation import gettext_lazy as _

CRONTAB_FIELDS = ("minute", "hour", "day_of_week", "day_of_month", "month_of_year")


@dataclass(frozen=True)
class Schedule:
    name: str
    task: str
    crontab: dict[str, str]
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str = "default"
    description: Any = ""

    def __post_init__(self) -> None:
        unknown = set(self.crontab) - set(CRONTAB_FIELDS)
        if unknown:
            raise ImproperlyConfigured(
                f"Schedule {self.name!r}: unknown crontab fields {sorted(unknown)}"
            )

    def crontab_fields(self) -> dict[str, str]:
        """All five crontab fields, '*' where not given."""
        return {name: str(self.crontab.get(name, "*")) for name in CRONTAB_FIELDS}


def collect_schedules() -> list[Schedule]:
    """Every installed app's ``schedules.SCHEDULES``, in app order; names must be unique."""
    found: list[Schedule] = []
    for app_config in apps.get_app_configs():
        if not module_has_submodule(app_config.module, "schedules"):
            continue
        module = import_module(f"{app_config.name}.schedules")
        found.extend(getattr(module, "SCHEDULES", []))
    names = [schedule.name for schedule in found]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ImproperlyConfigured(f"Duplicate schedule names: {duplicates}")
    return found


# crm's own periodic tasks (the registry above collects them like any app's).
SCHEDULES = [
    Schedule(
        name="crm: personal data retention",
        task="crm.tasks.privacy_retention",
        crontab={"minute": "15", "hour": "4"},
        description=_(
            "Anonymize clients with no purchase, event or consent change and no granted "
            "consent for PRIVACY_RETENTION_YEARS years (152-FZ), in batches."
        ),
    ),
    Schedule(
        name="crm: uploaded import files retention",
        task="crm.tasks.import_files_purge",
        crontab={"minute": "45", "hour": "4"},
        description=_(
            "Delete uploaded import files IMPORT_FILE_RETENTION_DAYS days after their last "
            "import finished; the import jobs and their figures stay."
        ),
    ),
]
