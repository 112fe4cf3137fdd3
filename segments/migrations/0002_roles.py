from django.db import migrations

from crm.roles import sync_roles


class Migration(migrations.Migration):
    """Marketers own segments; operators may look at them."""

    dependencies = [
        ("segments", "0001_initial"),
        ("crm", "0003_roles"),
    ]

    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop)]
