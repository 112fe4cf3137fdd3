from django.db import migrations

from crm.db.append_only import make_append_only

forwards, backwards = make_append_only("loyalty_pointsentry")


class Migration(migrations.Migration):
    dependencies = [("loyalty", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards)]
