"""Staff roles: the groups and their permissions, declared here and synced by migrations.

A later migration that adds models calls ``sync_roles`` again so the groups gain the new
permissions; permissions that do not exist yet are skipped.
"""

from __future__ import annotations

from typing import Any

MARKETER = "Marketer"
OPERATOR = "Operator"
INTEGRATION = "Integration"

_CLIENT_DATA = [
    "crm.client",
    "crm.child",
    "crm.pet",
    "crm.interest",
    "crm.consent",
    "crm.consentevent",
    "crm.category",
    "crm.brand",
    "crm.product",
    "crm.purchase",
    "crm.purchaseitem",
    "crm.event",
    "loyalty.tier",
    "loyalty.loyaltyaccount",
    "loyalty.pointsentry",
]


_OFFERS = [
    "offers.offer",
    "offers.offervariant",
    "offers.crosssellrule",
    "offers.productassociation",
    "offers.promopool",
    "offers.promocode",
]


_MESSAGING_EDIT = [
    "messaging.contactpolicy",
    "messaging.channelrule",
    "messaging.offercontactrule",
    "messaging.campaign",
    "messaging.triggerscenario",
]
_MESSAGING_READ = [
    "messaging.campaignrun",
    "messaging.message",
    "messaging.triggerfiring",
    "messaging.gatewayevent",
    "messaging.inboundsms",
    "messaging.call",
    "messaging.callbackrequest",
    "messaging.numberblock",
]


def _perms(models: list[str], *actions: str) -> list[str]:
    out: list[str] = []
    for model in models:
        app_label, name = model.split(".")
        out.extend(f"{app_label}.{action}_{name}" for action in actions)
    return out


ROLE_PERMISSIONS: dict[str, list[str]] = {
    # Marketers read everything about clients, fix profiles, import data, run the catalog and
    # tiers, and (from later issues) own segments, offers and campaigns.
    MARKETER: _perms(_CLIENT_DATA, "view")
    + _perms(
        [
            "crm.client",
            "crm.child",
            "crm.pet",
            "crm.interest",
            "crm.category",
            "crm.brand",
            "crm.product",
            "crm.purchase",
            "crm.purchaseitem",
            "loyalty.tier",
        ],
        "add",
        "change",
    )
    + ["crm.add_consentevent", "django_celery_beat.view_periodictask"]
    + _perms(["segments.segment"], "view", "add", "change", "delete")
    # File import and export of client data (issue 3).
    + _perms(["crm.importjob"], "view", "add", "change")
    + ["crm.export_clients"]
    # Offers, their texts, cross-sell rules, mined associations and promo codes (issue 5).
    + _perms(_OFFERS, "view", "add", "change", "delete")
    + ["offers.redeem_promocode"]
    # Personal data (issue 8): answer a client's "what do you store about me" and "forget me",
    # and read the whole audit log.
    + ["crm.export_personal_data", "crm.anonymize_client"]
    + ["crm.view_auditlog", "crm.view_all_auditlog"]
    # Messaging (issue 6): contact policies, campaigns (and the crontabs they run on), trigger
    # scenarios; runs, the outbox and what the gateways reported, read-only.
    + _perms(_MESSAGING_EDIT, "view", "add", "change")
    + ["messaging.delete_channelrule", "messaging.delete_offercontactrule"]
    + _perms(_MESSAGING_READ, "view")
    + ["messaging.add_numberblock", "messaging.delete_numberblock"]
    + _perms(["django_celery_beat.crontabschedule"], "view", "add", "change")
    + ["django_celery_beat.view_clockedschedule"]
    # Campaign results and report exports, and the operator card to read (issue 8).
    + ["messaging.view_results", "crm.view_client_card"],
    # Operators read client data and record what a client said: consent and call outcomes.
    # They export nothing, edit no offers, and see only their own audit entries.
    OPERATOR: _perms(_CLIENT_DATA, "view")
    + ["crm.add_consentevent"]
    + _perms(["segments.segment"], "view")
    + _perms(_OFFERS, "view")
    + ["crm.view_auditlog"]
    # The message history on the client (issue 6).
    + ["messaging.view_message"]
    # The operator card (issue 8): read it, record call outcomes, take callback requests, send
    # the suggested offer, call the client through the PBX.
    + [
        "crm.view_client_card",
        "crm.record_call_outcome",
        "crm.take_callback",
        "crm.send_offer_now",
        "crm.click_to_call",
    ],
    # Integrations push data through the API only (they are not staff).
    INTEGRATION: _perms(_CLIENT_DATA, "view")
    + _perms(
        [
            "crm.client",
            "crm.product",
            "crm.category",
            "crm.brand",
            "crm.purchase",
            "crm.purchaseitem",
            "crm.event",
        ],
        "add",
        "change",
    )
    + ["crm.add_consentevent", "crm.api_write"]
    # Tills and web shops redeem promo codes and read offers (issue 5).
    + ["offers.view_offer", "offers.redeem_promocode"],
}


def sync_roles(apps: Any, schema_editor: Any = None) -> None:
    """Create the groups and give each exactly its declared permissions (idempotent)."""
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    for group_name, perm_names in ROLE_PERMISSIONS.items():
        group, _ = group_model.objects.get_or_create(name=group_name)
        wanted = set()
        for perm_name in perm_names:
            app_label, codename = perm_name.split(".")
            wanted.update(
                permission_model.objects.filter(
                    content_type__app_label=app_label, codename=codename
                ).values_list("id", flat=True)
            )
        group.permissions.set(wanted)
