"""Finding a client the way an operator types."""

from __future__ import annotations

import pytest

from crm.models import Client
from crm.phones import normalize_phone
from crm.selectors import client_search
from tests.factories import ClientFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "written",
    ["8 (912) 345-67-89", "+7 912 345 67 89", "89123456789", "+79123456789", "7-912-345-6789"],
)
def test_phone_in_any_format_normalizes_to_e164(written: str) -> None:
    assert normalize_phone(written) == "+79123456789"


@pytest.mark.parametrize("junk", ["", "12", "hello", "8 (000) 000-00-00", "+7 912"])
def test_unparsable_phone_is_none(junk: str) -> None:
    assert normalize_phone(junk) is None


def test_search_by_phone_email_external_id_and_name() -> None:
    anna = ClientFactory(
        last_name="Смирнова",
        first_name="Анна",
        phone="+79123456789",
        email="anna@example.ru",
        external_id="POS-77",
    )
    ClientFactory(last_name="Смирнов", first_name="Борис", phone="+79990001122")
    ClientFactory(last_name="Иванов", first_name="Анатолий")
    everyone = Client.objects.all()

    assert list(client_search(everyone, "8 (912) 345-67-89")) == [anna]
    assert list(client_search(everyone, "ANNA@example.ru")) == [anna]
    assert list(client_search(everyone, "POS-77")) == [anna]
    assert list(client_search(everyone, "смирнова")) == [anna]
    assert list(client_search(everyone, "Смирнов Ан")) == [anna]
    assert client_search(everyone, "Смирнов").count() == 2
    assert client_search(everyone, "").count() == 3
    assert not client_search(everyone, "Петров").exists()
