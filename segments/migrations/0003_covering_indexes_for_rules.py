"""Covering indexes on crm tables for segment rules (PostgreSQL only; no-ops on SQLite).

- items by product and time, with the client: "bought product / category / brand in the last
  N days" reads the index only, never the 10M-row heap;
- purchases by client and time, with the total: per-client count / spend / average in a window
  are index-only probes.

Built CONCURRENTLY (this migration is not atomic) so a live database keeps taking purchases.
"""

from django.db import migrations

PG_INDEXES = [
    (
        "seg_item_product_time_client_idx",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS seg_item_product_time_client_idx "
        "ON crm_purchaseitem (product_id, purchased_at) INCLUDE (client_id)",
    ),
    (
        "seg_purchase_client_time_total_idx",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS seg_purchase_client_time_total_idx "
        "ON crm_purchase (client_id, purchased_at) INCLUDE (total)",
    ),
]


def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for _name, sql in PG_INDEXES:
        schema_editor.execute(sql)


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, _sql in PG_INDEXES:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("segments", "0002_roles"), ("crm", "0003_roles")]

    operations = [migrations.RunPython(create_indexes, drop_indexes, elidable=False)]
