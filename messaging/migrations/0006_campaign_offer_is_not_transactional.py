"""A campaign with an offer is marketing: it may not be flagged transactional, which would skip
consent, caps and quiet hours (invariant 1). Existing rows that were are cleared first."""

from django.db import migrations, models


def clear_transactional_offer_campaigns(apps, schema_editor):
    Campaign = apps.get_model("messaging", "Campaign")
    Campaign.objects.filter(is_transactional=True, offer__isnull=False).update(
        is_transactional=False
    )


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0005_message_call_dials_idx"),
    ]

    operations = [
        migrations.RunPython(clear_transactional_offer_campaigns, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="campaign",
            constraint=models.CheckConstraint(
                condition=models.Q(("is_transactional", False), ("offer__isnull", True), _connector="OR"),
                name="campaign_offer_is_not_transactional",
                violation_error_message=(
                    "An offer is marketing: a campaign with an offer cannot be transactional, "
                    "which would skip consent, caps and quiet hours."
                ),
            ),
        ),
    ]
