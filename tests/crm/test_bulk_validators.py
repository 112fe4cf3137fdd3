"""The fast paths of bulk row validation give exactly the verdicts of the full validators."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from crm.bulk import Invalid, email

ADDRESSES = [
    "anna@example.ru",
    "anna.petrova+shop@mail.example.ru",
    "a_b%c-d@x-y.example.com",
    "user@xn--80ak6aa92e.com",
    "user@пример.рф",
    ".anna@example.ru",
    "anna.@example.ru",
    "an..na@example.ru",
    "anna@-example.ru",
    "anna@example-.ru",
    "anna@example.r",
    "anna@example.123",
    "anna@localhost",
    "anna@[127.0.0.1]",
    '"quoted local"@example.ru',
    "o'brien@example.ie",
    "anna@example..ru",
    "anna@@example.ru",
    "a" * 65 + "@example.ru",
    "anna@" + "a" * 64 + ".ru",
    "anna@example.ru ",
    "анна@example.ru",
]


def _django_accepts(address: str) -> bool:
    try:
        validate_email(address)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("address", ADDRESSES)
def test_email_verdict_matches_django(address: str) -> None:
    lowered = address.strip().lower()
    try:
        email(address)
        accepted = True
    except Invalid:
        accepted = False
    assert accepted == _django_accepts(lowered)
