"""Reads of the client domain."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, Q, QuerySet

from crm.models import Client, Purchase, PurchaseItem
from crm.phones import normalize_phone


def client_search(queryset: QuerySet[Client], term: str) -> QuerySet[Client]:
    """Find clients the way an operator types: a phone in any format, an e-mail, an external id,
    or "Last [First [Middle]]" name prefixes. Every branch is served by an index."""
    term = " ".join((term or "").split())
    if not term:
        return queryset
    if "@" in term:
        return queryset.filter(email=term.lower())
    phone = normalize_phone(term)
    if phone:
        return queryset.filter(Q(phone=phone) | Q(external_id=term))
    # Capitalized like names are stored: SQLite's LIKE folds ASCII case only, not Cyrillic.
    words = [word[:1].upper() + word[1:].lower() for word in term.split(" ")]
    name = Q(last_name__istartswith=words[0])
    if len(words) > 1:
        name &= Q(first_name__istartswith=words[1])
    if len(words) > 2:
        name &= Q(middle_name__istartswith=words[2])
    return queryset.filter(name | Q(external_id=term))


RECENT_PURCHASES = 10


def client_card(
    *, client_id: int, purchases_offset: int = 0, purchases_limit: int = RECENT_PURCHASES
) -> dict[str, Any] | None:
    """The client card as data: profile, consents, loyalty, recent purchases (four queries:
    the client with its account and tier, consents, purchases, their items). The operator's
    card pages through the purchases with ``purchases_offset``/``purchases_limit``."""
    client = Client.objects.select_related("loyalty__tier").filter(pk=client_id).first()
    if client is None:
        return None
    purchases = list(
        Purchase.objects.filter(client_id=client_id)
        .prefetch_related(
            Prefetch(
                "items", queryset=PurchaseItem.objects.select_related("product").order_by("id")
            )
        )
        .order_by("-purchased_at", "-id")[purchases_offset : purchases_offset + purchases_limit]
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
