from django.db import migrations

from crm.roles import sync_roles


class Migration(migrations.Migration):
    """Marketers own offers and promo codes; operators may look at them."""

    dependencies = [
        ("offers", "0001_offers_initial"),
    ]

    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop)]
