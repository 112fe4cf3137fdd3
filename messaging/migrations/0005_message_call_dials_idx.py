"""An index for the per-number call caps: when each number was dialled in the last week.

Dispatch reads it for every chunk of calls (first attempts and retries alike), so it must not scan
the whole outbox. Partial (calls only): SMS and e-mail, most of the table, stay out of it. Built
concurrently on PostgreSQL (the table is large), so the migration is not atomic.
"""

from django.db import migrations, models

NAME = "message_call_dials_idx"


def create(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(
        f"CREATE INDEX {concurrently}IF NOT EXISTS {NAME} "
        "ON messaging_message (recipient, sent_at) WHERE channel = 'call'"
    )


def drop(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {NAME}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("messaging", "0004_campaign_throttle_help")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(create, drop, elidable=False)],
            state_operations=[
                migrations.AddIndex(
                    model_name="message",
                    index=models.Index(
                        condition=models.Q(("channel", "call")),
                        fields=["recipient", "sent_at"],
                        name=NAME,
                    ),
                )
            ],
        )
    ]
