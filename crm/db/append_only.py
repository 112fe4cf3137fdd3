"""Database triggers that make history tables append-only.

PostgreSQL refuses UPDATE and DELETE (TRUNCATE, used by test teardown and by nobody else, is a
statement-level operation and unaffected). SQLite refuses UPDATE only, because Django's flush on
SQLite deletes rows one table at a time.

On SQLite, a migration that alters a column rebuilds the table and drops its triggers: such a
migration must end by running ``make_append_only`` for that table again (tests catch it).
"""

from __future__ import annotations

from typing import Any


def _pg_sql(table: str) -> str:
    return f"""
        CREATE OR REPLACE FUNCTION lichno_refuse_change() RETURNS trigger AS $$
        BEGIN
            RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'restrict_violation';
        END;
        $$ LANGUAGE plpgsql;
        DROP TRIGGER IF EXISTS {table}_append_only ON {table};
        CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION lichno_refuse_change();
    """


def _sqlite_sql(table: str) -> str:
    return f"""
        CREATE TRIGGER IF NOT EXISTS {table}_append_only BEFORE UPDATE ON {table}
        BEGIN SELECT RAISE(ABORT, '{table} is append-only: UPDATE refused'); END;
    """


def make_append_only(*tables: str) -> Any:
    """A RunPython pair installing/removing the append-only trigger on ``tables``."""

    def forwards(apps: Any, schema_editor: Any) -> None:
        vendor = schema_editor.connection.vendor
        for table in tables:
            sql = _pg_sql(table) if vendor == "postgresql" else _sqlite_sql(table)
            if vendor in ("postgresql", "sqlite"):
                # A raw cursor with no parameters: the PL/pgSQL body contains literal '%'.
                with schema_editor.connection.cursor() as cursor:
                    cursor.execute(sql)

    def backwards(apps: Any, schema_editor: Any) -> None:
        vendor = schema_editor.connection.vendor
        for table in tables:
            if vendor == "postgresql":
                schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            elif vendor == "sqlite":
                schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only")

    return forwards, backwards
