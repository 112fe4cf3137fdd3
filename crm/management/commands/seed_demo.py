"""python manage.py seed_demo --clients N [--seed S] [--today D] [--flush] [--users] [--if-empty]"""

from __future__ import annotations

import argparse
from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from crm.demo import DemoDataExists, ensure_demo_users, seed
from crm.models import Client


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"--today must be YYYY-MM-DD, not {value!r}") from exc


class Command(BaseCommand):
    help = (
        "Load a deterministic, realistic demo data set (clients, consents, catalog, purchases, "
        "events, loyalty). PostgreSQL uses COPY: a million clients take minutes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--clients", type=int, help="How many clients to generate.")
        parser.add_argument("--seed", type=int, default=1, help="Random seed (default 1).")
        parser.add_argument(
            "--today",
            type=_date,
            help="Anchor date, YYYY-MM-DD (default: today in TIME_ZONE). History ends the day "
            "before; same seed and date give the same rows.",
        )
        parser.add_argument(
            "--flush",
            action="store_true",
            help="Delete all client-domain data first (TRUNCATE ... CASCADE on PostgreSQL).",
        )
        parser.add_argument(
            "--users", action="store_true", help="Create the demo logins and print them."
        )
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="Only on first start: do nothing when clients already exist (used by make run).",
        )
        parser.add_argument("--chunk-size", type=int, default=20_000, help=argparse.SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        clients: int | None = options["clients"]
        if clients is None and not options["users"]:
            raise CommandError("give --clients N (and/or --users)")
        if clients is not None and clients < 0:
            raise CommandError("--clients must be zero or more")
        if options["if_empty"] and Client.objects.exists():
            self.stdout.write("Demo data is already loaded; nothing to do.")
            return
        today = options["today"]
        if isinstance(today, str):  # call_command passes option values unparsed
            today = _date(today)
        if clients is not None:
            try:
                stats = seed(
                    clients=clients,
                    seed=options["seed"],
                    today=today,
                    flush=options["flush"],
                    chunk_size=options["chunk_size"],
                    stdout=self.stderr if options["verbosity"] >= 1 else _Null(),
                )
            except DemoDataExists as exc:
                raise CommandError(str(exc)) from exc
            if options["verbosity"] >= 1:
                self.stdout.write(stats.summary())
        if options["users"]:
            for user in ensure_demo_users():
                role = "superuser" if user.superuser else f"staff, group {user.group}"
                self.stdout.write(f"login {user.username} / {user.password} ({role})")


class _Null:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        return None
