"""Offers' personal data for ``crm.privacy``: the promo codes handed to a client.

Codes are kept on anonymization: a code is a random string, not personal data; redeemed codes
feed revenue reports, and keeping the assignment keeps "a code belongs to one client" true.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.translation import gettext_lazy as _

from crm.privacy import Rows, Section, register
from offers.models import PromoCode


def export_promo_codes(client_ids: Sequence[int]) -> Rows:
    return (
        PromoCode.objects.filter(client_id__in=client_ids)
        .order_by("assigned_at", "id")
        .values("client_id", "code", "offer__name", "assigned_at", "redeemed_at")
    )


register(Section("promo_codes", _("promo codes"), export_promo_codes, models=(PromoCode,)))
