"""Permissions of the operator's client card, given to the Operator group (and the card view to
Marketers). Added to the groups here, not through ``crm.roles`` (owned elsewhere for now):
move them into ``crm.roles.ROLE_PERMISSIONS`` (Operator: all five, Marketer:
view_client_card), or the next ``sync_roles`` drops them.
"""

from typing import Any

from django.db import migrations

# Frozen copy of crm.card.permissions.CARD_PERMISSIONS at the time of this migration.
PERMISSIONS = {
    "view_client_card": "Can open the operator's client card",
    "record_call_outcome": "Can record a call outcome",
    "take_callback": "Can take callback requests",
    "send_offer_now": "Can send a client the suggested offer now",
    "click_to_call": "Can call a client through the PBX",
}
GRANTS = {
    "Operator": list(PERMISSIONS),
    "Marketer": ["view_client_card"],
}


def grant(apps: Any, schema_editor: Any) -> None:
    content_type_model = apps.get_model("contenttypes", "ContentType")
    permission_model = apps.get_model("auth", "Permission")
    group_model = apps.get_model("auth", "Group")
    content_type, _ = content_type_model.objects.get_or_create(app_label="crm", model="client")
    permissions = {}
    for codename, name in PERMISSIONS.items():
        permissions[codename], _ = permission_model.objects.get_or_create(
            content_type=content_type, codename=codename, defaults={"name": name}
        )
    for group_name, codenames in GRANTS.items():
        group, _ = group_model.objects.get_or_create(name=group_name)
        group.permissions.add(*(permissions[c] for c in codenames))


def revoke(apps: Any, schema_editor: Any) -> None:
    apps.get_model("auth", "Permission").objects.filter(
        content_type__app_label="crm", codename__in=list(PERMISSIONS)
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("crm", "0006_privacy_permissions_and_anonymization_source"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        # After the latest migration that re-syncs the groups (it would drop these until
        # crm.roles lists them).
        ("messaging", "0003_results"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
