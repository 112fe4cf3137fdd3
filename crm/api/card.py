"""The client card as data, for the API: profile, consents, loyalty, recent purchases."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch

from crm.models import Client, Purchase, PurchaseItem

RECENT_PURCHASES = 10


def client_card_data(*, client_id: int) -> dict[str, Any] | None:
    """Four queries: the client with its account and tier, consents, purchases, their items."""
    client = Client.objects.select_related("loyalty__tier").filter(pk=client_id).first()
    if client is None:
        return None
    purchases = list(
        Purchase.objects.filter(client_id=client_id)
        .select_related("client")
        .prefetch_related(
            Prefetch(
                "items", queryset=PurchaseItem.objects.select_related("product").order_by("id")
            )
        )
        .order_by("-purchased_at", "-id")[:RECENT_PURCHASES]
    )
    account = getattr(client, "loyalty", None)
    return {
        "profile": client,
        "consents": list(client.consents.order_by("channel", "purpose")),
        "loyalty": None
        if account is None
        else {
            "tier": account.tier.name if account.tier else None,
            "balance": account.balance,
            "rolling_spend": account.rolling_spend,
        },
        "recent_purchases": purchases,
        # Messages arrive with the messaging app; the card will list the latest ones here.
        "recent_messages": [],
    }
