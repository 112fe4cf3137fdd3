"""Phone numbers as people write them ("8 (912) 345-67-89") to E.164 ("+79123456789")."""

from __future__ import annotations

import phonenumbers
from django.conf import settings


def normalize_phone(raw: str, *, region: str | None = None) -> str | None:
    """E.164 for a valid number written in any common format, else None."""
    text = (raw or "").strip()
    if not text or sum(ch.isdigit() for ch in text) < 5:
        return None
    region = region or settings.PHONENUMBER_DEFAULT_REGION
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
