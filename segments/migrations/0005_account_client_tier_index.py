"""Loyalty accounts by client with the tier (PostgreSQL only; a no-op on SQLite).

"Tier in / not in" is probed per client (``EXISTS (.. client_id = .. AND tier_id IN ..)``);
with the tier in the index the probe is index-only instead of a visit to the account row. The
balance is left out on purpose: it changes with every purchase, and an indexed column would
stop those updates from being HOT.

Built CONCURRENTLY (this migration is not atomic) so a live database keeps taking writes.
"""

from django.db import migrations

NAME = "seg_account_client_tier_idx"


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {NAME} "
        "ON loyalty_loyaltyaccount (client_id) INCLUDE (tier_id)"
    )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {NAME}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("segments", "0004_active_client_index"), ("loyalty", "0001_initial")]

    operations = [migrations.RunPython(create_index, drop_index, elidable=False)]
