"""The fast validity check decides exactly as phonenumbers does."""

from __future__ import annotations

import random

import phonenumbers
from phonenumbers import PhoneNumberType

from crm.phones import is_valid_national_number


def _samples(count: int) -> list[tuple[int, str]]:
    """Example numbers of every region, many with random trailing digits (valid and not)."""
    rnd = random.Random(2026)
    regions = sorted(phonenumbers.SUPPORTED_REGIONS)
    kinds = [PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE, PhoneNumberType.TOLL_FREE]
    out: list[tuple[int, str]] = []
    while len(out) < count:
        example = phonenumbers.example_number_for_type(rnd.choice(regions), rnd.choice(kinds))
        if example is None:
            continue
        assert example.country_code is not None  # example numbers always carry their code
        national = phonenumbers.national_significant_number(example)
        if national.startswith("0"):
            continue
        keep = len(national) - rnd.randint(0, 4)
        extra = "".join(str(rnd.randint(0, 9)) for _ in range(rnd.randint(0, 5)))
        out.append((example.country_code, national[:keep] + extra))
    return out


def test_fast_validity_equals_phonenumbers_on_every_region() -> None:
    disagreements = []
    decided = valid = 0
    for country_code, national in _samples(6000):
        ours = is_valid_national_number(country_code, national)
        if ours is None:
            continue
        theirs = phonenumbers.is_valid_number(
            phonenumbers.PhoneNumber(country_code=country_code, national_number=int(national))
        )
        decided += 1
        valid += theirs
        if ours != theirs:
            disagreements.append((country_code, national, theirs))
    assert disagreements == []
    assert decided > 5000 and 1000 < valid < decided  # both verdicts well represented


def test_non_geographic_codes_are_left_to_the_library() -> None:
    assert is_valid_national_number(800, "12345678") is None
    assert is_valid_national_number(999, "12345678") is None  # unassigned code
