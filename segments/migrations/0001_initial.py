import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

import segments.models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("crm", "0003_roles"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Segment",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("created_at", models.DateTimeField(auto_now_add=True, verbose_name="created")),
                ("updated_at", models.DateTimeField(auto_now=True, verbose_name="updated")),
                ("name", models.CharField(max_length=150, unique=True, verbose_name="name")),
                ("description", models.TextField(blank=True, verbose_name="description")),
                (
                    "kind",
                    models.CharField(
                        choices=[("rules", "rule-based"), ("static", "static list")],
                        default="rules",
                        max_length=10,
                        verbose_name="kind",
                    ),
                ),
                (
                    "rules",
                    models.JSONField(
                        blank=True,
                        default=segments.models.empty_rules,
                        help_text="A tree of rule groups; see segments/README.md.",
                        verbose_name="rules",
                    ),
                ),
                (
                    "auto_refresh",
                    models.BooleanField(
                        default=False,
                        help_text="The membership snapshot is recomputed by the periodic task.",
                        verbose_name="refresh periodically",
                    ),
                ),
                ("member_count", models.PositiveIntegerField(blank=True, null=True, verbose_name="members (snapshot)")),
                ("refreshed_at", models.DateTimeField(blank=True, null=True, verbose_name="snapshot taken at")),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                        verbose_name="created by",
                    ),
                ),
            ],
            options={
                "verbose_name": "segment",
                "verbose_name_plural": "segments",
                "ordering": ["name"],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("kind__in", ["rules", "static"])), name="segment_kind_known"
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="SegmentMember",
            fields=[
                ("pk", models.CompositePrimaryKey("segment", "client", blank=True, editable=False, primary_key=True, serialize=False)),
                (
                    "segment",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="members",
                        to="segments.segment",
                        verbose_name="segment",
                    ),
                ),
                (
                    "client",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="segment_memberships",
                        to="crm.client",
                        verbose_name="client",
                    ),
                ),
                ("added_at", models.DateTimeField(verbose_name="added at")),
            ],
            options={
                "verbose_name": "segment member",
                "verbose_name_plural": "segment members",
                "indexes": [models.Index(fields=["client", "segment"], name="segment_member_client_idx")],
            },
        ),
        migrations.CreateModel(
            name="SegmentSizeHistory",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("measured_at", models.DateTimeField(verbose_name="measured at")),
                ("size", models.PositiveIntegerField(verbose_name="size")),
                ("added", models.PositiveIntegerField(default=0, verbose_name="added")),
                ("removed", models.PositiveIntegerField(default=0, verbose_name="removed")),
                ("duration_ms", models.PositiveIntegerField(default=0, verbose_name="duration, ms")),
                (
                    "segment",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="size_history",
                        to="segments.segment",
                        verbose_name="segment",
                    ),
                ),
            ],
            options={
                "verbose_name": "segment size",
                "verbose_name_plural": "segment size history",
                "ordering": ["-measured_at"],
                "indexes": [models.Index(fields=["segment", "-measured_at"], name="segment_size_time_idx")],
            },
        ),
    ]
