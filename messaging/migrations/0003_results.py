import django.db.models.deletion
from django.db import migrations, models

from crm.roles import sync_roles


class Migration(migrations.Migration):
    dependencies = [
        ("crm", "0005_slimmer_indexes_on_big_tables"),
        ("messaging", "0002_roles"),
        ("offers", "0002_roles"),
    ]

    operations = [
        migrations.CreateModel(
            name="Attribution",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("is_control", models.BooleanField(default=False, verbose_name="control group")),
                ("purchased_at", models.DateTimeField(verbose_name="purchased at")),
                (
                    "revenue",
                    models.DecimalField(
                        decimal_places=2, default=0, max_digits=14, verbose_name="revenue"
                    ),
                ),
                (
                    "margin",
                    models.DecimalField(
                        decimal_places=2, default=0, max_digits=14, verbose_name="margin"
                    ),
                ),
                (
                    "discount",
                    models.DecimalField(
                        decimal_places=2, default=0, max_digits=14, verbose_name="discount cost"
                    ),
                ),
                ("attributed_at", models.DateTimeField(verbose_name="attributed at")),
                (
                    "client",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="crm.client",
                        verbose_name="client",
                    ),
                ),
                (
                    "message",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="attributions",
                        to="messaging.message",
                        verbose_name="message",
                    ),
                ),
                (
                    "offer",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="attributions",
                        to="offers.offer",
                        verbose_name="offer",
                    ),
                ),
                (
                    "run",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="attributions",
                        to="messaging.campaignrun",
                        verbose_name="campaign run",
                    ),
                ),
                (
                    "firing",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="attributions",
                        to="messaging.triggerfiring",
                        verbose_name="trigger firing",
                    ),
                ),
                (
                    "variant",
                    models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="offers.offervariant",
                        verbose_name="variant",
                    ),
                ),
                (
                    "purchase",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="attributions",
                        to="crm.purchase",
                        verbose_name="purchase",
                    ),
                ),
            ],
            options={
                "verbose_name": "attribution",
                "verbose_name_plural": "attributions",
                "permissions": [("view_results", "Can see campaign results and export reports")],
                "indexes": [
                    models.Index(fields=["purchased_at"], name="attribution_purchased_idx")
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("purchase",), name="attribution_one_per_purchase"
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="OfferAttributionRule",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "window_days",
                    models.PositiveSmallIntegerField(
                        default=7,
                        help_text=(
                            "A purchase this many days after the message at most is credited to it."
                        ),
                        verbose_name="attribution window, days",
                    ),
                ),
                (
                    "scope",
                    models.CharField(
                        choices=[
                            ("offer", "products or categories of the offer"),
                            ("any", "any purchase"),
                        ],
                        default="offer",
                        help_text=(
                            "Only purchases of the offer's products or categories (and the "
                            "products named in the message), or any purchase."
                        ),
                        max_length=10,
                        verbose_name="what counts",
                    ),
                ),
                (
                    "offer",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="attribution_rule",
                        to="offers.offer",
                        verbose_name="offer",
                    ),
                ),
            ],
            options={
                "verbose_name": "attribution rule",
                "verbose_name_plural": "attribution rules",
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("window_days__gte", 1), ("window_days__lte", 90)),
                        name="attribution_window_range",
                    )
                ],
            },
        ),
        # Marketers gain messaging.view_results (crm.roles).
        migrations.RunPython(sync_roles, migrations.RunPython.noop),
    ]
