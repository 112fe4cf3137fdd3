"""An index of the clients who may be in a segment (PostgreSQL only; a no-op on SQLite).

Every compiled segment ends in ``crm_client.id = ... AND NOT is_anonymized``: once the rules'
joins have found a set of client ids, each is checked against this small partial index
(index-only) instead of a visit to the wide client row.

Built CONCURRENTLY (this migration is not atomic) so a live database keeps taking writes.
"""

from django.db import migrations

NAME = "seg_client_active_id_idx"


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {NAME} ON crm_client (id) WHERE NOT is_anonymized"
    )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {NAME}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("segments", "0003_covering_indexes_for_rules")]

    operations = [migrations.RunPython(create_index, drop_index, elidable=False)]
