"""Phone numbers as people write them ("8 (912) 345-67-89") to E.164 ("+79123456789")."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

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


# Validity without the parser ---------------------------------------------------------------------
# phonenumbers.is_valid_number recompiles a wrapped pattern per check (~50 µs a number), which
# dominates bulk imports. The same decision from the same metadata, with patterns compiled once:
# a number is valid when its region's general pattern and any number-type pattern fully match.

_NUMBER_TYPES = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
    "mobile",
)


@dataclass(frozen=True)
class _Desc:
    lengths: frozenset[int]
    pattern: re.Pattern[str] | None

    @classmethod
    def of(cls, desc: Any) -> _Desc:
        if desc is None or not desc.national_number_pattern:
            return cls(frozenset(), None)
        return cls(frozenset(desc.possible_length), re.compile(desc.national_number_pattern))

    def matches(self, national: str) -> bool:
        if self.pattern is None:
            return False
        if self.lengths and len(national) not in self.lengths:
            return False
        return self.pattern.fullmatch(national) is not None


@dataclass(frozen=True)
class _Region:
    general: _Desc
    types: tuple[_Desc, ...]
    leading_digits: re.Pattern[str] | None

    def valid(self, national: str) -> bool:
        return self.general.matches(national) and any(t.matches(national) for t in self.types)


@cache
def _region(code: str) -> _Region | None:
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(code, None)
    if metadata is None:
        return None
    return _Region(
        general=_Desc.of(metadata.general_desc),
        types=tuple(_Desc.of(getattr(metadata, name)) for name in _NUMBER_TYPES),
        leading_digits=re.compile(metadata.leading_digits) if metadata.leading_digits else None,
    )


def is_valid_national_number(country_code: int, national: str) -> bool | None:
    """``phonenumbers.is_valid_number`` for +<country_code><national> (no leading zero), or None
    where only the library can tell (non-geographic codes)."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(country_code)
    if not regions or phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY in regions:
        return None
    chosen: _Region | None = None
    if len(regions) == 1:
        chosen = _region(regions[0])
    else:  # the library's region choice: leading digits where given, else full validation
        for code in regions:
            candidate = _region(code)
            if candidate is None:
                continue
            if candidate.leading_digits is not None:
                if candidate.leading_digits.match(national):
                    chosen = candidate
                    break
            elif candidate.valid(national):
                chosen = candidate
                break
    return chosen is not None and chosen.valid(national)
