from django.db import migrations

from crm.db.append_only import make_append_only

PG_INDEXES = [
    # Admin and card search: last name prefix, case-insensitive, at a million clients.
    (
        "client_last_name_upper_prefix_idx",
        "CREATE INDEX IF NOT EXISTS client_last_name_upper_prefix_idx "
        "ON crm_client (UPPER(last_name) text_pattern_ops)",
    ),
    (
        "client_email_upper_idx",
        "CREATE INDEX IF NOT EXISTS client_email_upper_idx ON crm_client (UPPER(email))",
    ),
]


def create_pg_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for _name, sql in PG_INDEXES:
        schema_editor.execute(sql)


def drop_pg_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, _sql in PG_INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


consent_forwards, consent_backwards = make_append_only("crm_consentevent", "crm_auditlog")


class Migration(migrations.Migration):
    dependencies = [("crm", "0001_initial")]

    operations = [
        migrations.RunPython(consent_forwards, consent_backwards),
        migrations.RunPython(create_pg_indexes, drop_pg_indexes),
    ]
