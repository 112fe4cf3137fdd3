"""Writers put generated batches into the database: COPY on PostgreSQL, executemany elsewhere."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from crm.demo.tables import Row


class Writer(Protocol):
    skips_fk_triggers: bool

    def transaction(self) -> AbstractContextManager[None]:
        """One chunk's transaction."""

    def write(self, table: str, columns: Sequence[str], rows: list[Row]) -> None: ...

    def finish(self, tables: Sequence[str]) -> None:
        """After the last batch: sequences and planner statistics."""


class PostgresCopyWriter:
    """``COPY ... FROM STDIN`` through the raw psycopg 3 connection of a Django connection."""

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.connection = connection
        with connection.cursor() as cursor:
            cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            row = cursor.fetchone()
        # Like pg_restore --disable-triggers: a superuser skips the per-row foreign-key
        # triggers (the generator guarantees integrity, and the tests check it).
        self.skips_fk_triggers = bool(row and row[0])

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with transaction.atomic(using=self.connection.alias), self.connection.cursor() as cur:
            # SET LOCAL: nothing leaks into the connection's later transactions.
            # Timestamps arrive as UTC text; Django's sessions are UTC already, say so anyway.
            cur.execute("SET LOCAL TIME ZONE 'UTC'")
            cur.execute("SET LOCAL synchronous_commit = off")
            if self.skips_fk_triggers:
                cur.execute("SET LOCAL session_replication_role = replica")
            yield
            if self.skips_fk_triggers:
                # Inside a caller's transaction (tests) the setting would outlive this chunk.
                cur.execute("SET LOCAL session_replication_role = DEFAULT")

    def write(self, table: str, columns: Sequence[str], rows: list[Row]) -> None:
        if not rows:
            return
        raw = self.connection.connection
        sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        with raw.cursor() as cursor, cursor.copy(sql) as copy:
            write_row = copy.write_row
            for row in rows:
                write_row(row)

    def finish(self, tables: Sequence[str]) -> None:
        with self.connection.cursor() as cursor:
            for table in tables:
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"COALESCE(MAX(id), 1), MAX(id) IS NOT NULL) FROM {table}"
                )
            cursor.execute(f"ANALYZE {', '.join(tables)}")


class ExecutemanyWriter:
    """Plain ``INSERT`` with ``executemany`` (SQLite and anything that is not PostgreSQL)."""

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.connection = connection
        self.skips_fk_triggers = False

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with transaction.atomic(using=self.connection.alias):
            yield

    def write(self, table: str, columns: Sequence[str], rows: list[Row]) -> None:
        if not rows:
            return
        qn = self.connection.ops.quote_name
        placeholders = ", ".join(["%s"] * len(columns))
        sql = (
            f"INSERT INTO {qn(table)} ({', '.join(qn(c) for c in columns)}) VALUES ({placeholders})"
        )
        with self.connection.cursor() as cursor:
            cursor.executemany(sql, rows)

    def finish(self, tables: Sequence[str]) -> None:
        # SQLite moves its AUTOINCREMENT counters past explicit ids by itself.
        if self.connection.vendor == "sqlite":
            with self.connection.cursor() as cursor:
                cursor.execute("ANALYZE")


def writer_for(connection: BaseDatabaseWrapper) -> Writer:
    if connection.vendor == "postgresql":
        return PostgresCopyWriter(connection)
    return ExecutemanyWriter(connection)
