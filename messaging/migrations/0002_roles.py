from django.db import migrations

from crm.roles import sync_roles


class Migration(migrations.Migration):
    """Marketers run policies, campaigns and scenarios; operators read the message history."""

    dependencies = [
        ("messaging", "0001_initial"),
        ("crm", "0006_privacy_permissions_and_anonymization_source"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop)]
