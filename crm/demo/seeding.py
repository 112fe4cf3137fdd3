"""Seeding the demo data set: flush, generate in chunks, write, report."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

from django.apps import apps
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, models, transaction
from django.utils import timezone

from crm.demo.generator import DemoGenerator
from crm.demo.tables import CATALOG_TABLES, CLIENT_TABLES, TABLES, Batch
from crm.demo.writers import writer_for

DEFAULT_CHUNK = 20_000
DOMAIN_APPS = ("crm", "loyalty")
# Written by a second database session in parallel (PostgreSQL only, see ``seed``); about half
# of the rows and index entries.
SIDE_SESSION_TABLES = (
    "crm_consentevent",
    "crm_consent",
    "crm_purchase",
    "loyalty_loyaltyaccount",
    "loyalty_pointsentry",
)


class ProgressStream(Protocol):
    def write(self, text: str, /) -> object: ...

    def flush(self) -> object: ...


class DemoDataExists(Exception):
    """The database already holds client-domain data and no flush was asked for."""


@dataclass
class SeedStats:
    clients: int
    seed: int
    today: date
    vendor: str
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    # Time spent writing each table (two sessions may overlap, so these add up to more).
    write_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def rows_per_second(self) -> float:
        return self.total_rows / self.seconds if self.seconds else 0.0

    @property
    def clients_per_second(self) -> float:
        return self.clients / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        width = max(len(t) for t in self.rows) if self.rows else 10
        lines = [f"{'table':<{width}}  {'rows':>12}  {'write, s':>9}"]
        lines += [
            f"{table:<{width}}  {count:>12,}  {self.write_seconds.get(table, 0.0):>9.1f}"
            for table, count in self.rows.items()
        ]
        lines.append(f"{'total':<{width}}  {self.total_rows:>12,}")
        lines.append(
            f"{self.clients:,} clients in {self.seconds:.1f} s on {self.vendor}: "
            f"{self.rows_per_second:,.0f} rows/s, {self.clients_per_second:,.0f} clients/s"
        )
        return "\n".join(lines)


def domain_tables(using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """Tables of crm and loyalty, plus every table that references them (transitively)."""
    all_models = list(apps.get_models(include_auto_created=True))
    chosen: set[type[models.Model]] = {
        m for m in all_models if m._meta.app_label in DOMAIN_APPS and not m._meta.proxy
    }
    changed = True
    while changed:
        changed = False
        for model in all_models:
            if model in chosen or model._meta.proxy or not model._meta.managed:
                continue
            for f in model._meta.concrete_fields:
                if f.is_relation and f.related_model in chosen:
                    chosen.add(model)
                    changed = True
                    break
    existing = set(connections[using].introspection.table_names())
    return sorted({m._meta.db_table for m in chosen} & existing)


def flush_domain_data(using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """Delete all client-domain data (and whatever points at it); ids restart at 1.

    PostgreSQL: one TRUNCATE ... RESTART IDENTITY CASCADE (the append-only triggers refuse
    row deletes, not TRUNCATE). Elsewhere: DELETE every table in one transaction.
    """
    connection = connections[using]
    tables = domain_tables(using)
    qn = connection.ops.quote_name
    with transaction.atomic(using=using), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"TRUNCATE {', '.join(qn(t) for t in tables)} RESTART IDENTITY CASCADE")
        else:
            for table in tables:
                cursor.execute(f"DELETE FROM {qn(table)}")
            if connection.vendor == "sqlite":
                cursor.execute(
                    "SELECT 1 FROM sqlite_master WHERE type='table' AND name='sqlite_sequence'"
                )
                if cursor.fetchone():
                    marks = ", ".join(["%s"] * len(tables))
                    cursor.execute(f"DELETE FROM sqlite_sequence WHERE name IN ({marks})", tables)
    return tables


def nonempty_tables(tables: Iterable[str], using: str = DEFAULT_DB_ALIAS) -> list[str]:
    connection = connections[using]
    qn = connection.ops.quote_name
    found = []
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"SELECT 1 FROM {qn(table)} LIMIT 1")
            if cursor.fetchone():
                found.append(table)
    return found


def seed(
    *,
    clients: int,
    seed: int = 1,
    today: date | None = None,
    flush: bool = False,
    chunk_size: int = DEFAULT_CHUNK,
    parallel_sessions: bool = True,
    stdout: ProgressStream | None = None,
    using: str = DEFAULT_DB_ALIAS,
) -> SeedStats:
    """Write a deterministic demo data set of ``clients`` clients.

    The same ``seed`` and ``today`` give identical rows, ids included, on an empty database and
    on every backend. Without ``flush`` an existing data set is refused with DemoDataExists.
    Progress goes to ``stdout`` (default: stderr).

    On PostgreSQL rows go in with COPY, one transaction per chunk; as a superuser outside a
    caller's transaction, two sessions write disjoint tables at once with the foreign-key
    triggers skipped (the rows are consistent by construction), so a failure midway can leave
    a partial data set: seed again with ``flush``.
    """
    out: ProgressStream = stdout if stdout is not None else sys.stderr
    connection = connections[using]
    today = today or timezone.localdate()
    if flush:
        flush_domain_data(using)
    else:
        busy = nonempty_tables(["crm_client", *CATALOG_TABLES, *CLIENT_TABLES], using)
        if busy:
            raise DemoDataExists(
                f"the database already has data in {', '.join(busy)}; "
                "pass --flush to replace it with demo data"
            )

    stats = SeedStats(clients=clients, seed=seed, today=today, vendor=connection.vendor)
    stats.rows = dict.fromkeys(TABLES, 0)
    stats.write_seconds = dict.fromkeys(TABLES, 0.0)
    started = time.perf_counter()
    generator = DemoGenerator(
        seed=seed,
        today=today,
        time_zone=settings.TIME_ZONE,
        points_lifetime_days=settings.LOYALTY_POINTS_LIFETIME_DAYS,
    )
    writer = writer_for(connection)
    with writer.transaction():
        batch = generator.catalog()
        for table in CATALOG_TABLES:
            writer.write(table, TABLES[table], batch[table])
            stats.rows[table] += len(batch[table])

    # The next chunk is generated in a thread while the database takes the current one
    # (psycopg waits for the server without holding the GIL). Generation stays sequential,
    # so the rows do not depend on timing.
    # Two database sessions write disjoint tables at once when nothing ties them together:
    # outside a caller's transaction, and with the foreign-key triggers skipped (superuser).
    parallel = parallel_sessions and writer.skips_fk_triggers and not connection.in_atomic_block
    side_tables = SIDE_SESSION_TABLES if parallel else ()
    main_tables = tuple(t for t in CLIENT_TABLES if t not in side_tables)

    def write_tables(tables: tuple[str, ...], batch: Batch) -> None:
        if not tables:
            return
        session = writer_for(connections[using])  # this thread's own connection
        with session.transaction():
            for table in tables:
                began = time.perf_counter()
                session.write(table, TABLES[table], batch[table])
                stats.write_seconds[table] += time.perf_counter() - began

    sizes = [min(chunk_size, clients - n) for n in range(0, clients, chunk_size)]
    done = 0
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="seed-demo-gen") as gen,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="seed-demo-copy") as side,
    ):
        pending = gen.submit(generator.clients, sizes[0]) if sizes else None
        for index, size in enumerate(sizes):
            assert pending is not None
            batch = pending.result()
            pending = (
                gen.submit(generator.clients, sizes[index + 1]) if index + 1 < len(sizes) else None
            )
            side_done = side.submit(write_tables, side_tables, batch)
            write_tables(main_tables, batch)
            side_done.result()
            for table in CLIENT_TABLES:
                stats.rows[table] += len(batch[table])
            done += size
            elapsed = time.perf_counter() - started
            out.write(
                f"seed_demo: {done:,}/{clients:,} clients, {stats.total_rows:,} rows, "
                f"{elapsed:.1f} s, {stats.total_rows / elapsed:,.0f} rows/s\n"
            )
            out.flush()
            del batch
        if parallel:
            side.submit(_close_connection, using).result()
    writer.finish(list(TABLES))
    stats.seconds = time.perf_counter() - started
    return stats


def _close_connection(using: str) -> None:
    connections[using].close()


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str
    group: str | None
    superuser: bool = False


DEMO_USERS = (
    DemoUser("admin", "lichno-admin", None, superuser=True),
    DemoUser("marketer", "lichno-marketer", "Marketer"),
    DemoUser("operator", "lichno-operator", "Operator"),
)


def ensure_demo_users() -> list[DemoUser]:
    """Create or reset the demo logins (idempotent); the role groups come from migrations."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user_model = get_user_model()
    with transaction.atomic():
        for spec in DEMO_USERS:
            user, _ = user_model.objects.get_or_create(username=spec.username)
            user.is_staff = True
            user.is_superuser = spec.superuser
            user.is_active = True
            user.set_password(spec.password)
            user.save()
            if spec.group:
                user.groups.set([Group.objects.get(name=spec.group)])
    return list(DEMO_USERS)
