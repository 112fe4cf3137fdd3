"""Reads of the client domain."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from crm.models import Client
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
