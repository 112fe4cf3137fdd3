"""Finding the caller: a phone in any format, a name, an e-mail, an external id."""

from __future__ import annotations

import pytest
from django.test import Client as HttpClient
from django.urls import reverse

from tests.card.conftest import Rich
from tests.factories import ClientFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "term",
    [
        "8 (912) 345-67-89",
        "+7 912 345 67 89",
        "89123456789",
        "Смирнова",
        "смирнова анна",
        "ANNA6789@example.ru",
        "POS-6789",
    ],
)
def test_one_match_opens_the_card(term: str, operator_http: HttpClient, rich: Rich) -> None:
    ClientFactory(last_name="Иванов", first_name="Борис", phone="+79990001122")

    response = operator_http.get(reverse("card:search"), {"q": term})

    assert response.status_code == 302
    assert response["Location"] == reverse("card:card", args=[rich.client.pk])


def test_several_matches_are_listed(operator_http: HttpClient, rich: Rich) -> None:
    other = ClientFactory(last_name="Смирнов", first_name="Борис")

    response = operator_http.get(reverse("card:search"), {"q": "Смирнов"})

    assert response.status_code == 200
    assert [c.pk for c in response.context["results"]] == [other.pk, rich.client.pk]
    page = response.content.decode()
    assert reverse("card:card", args=[other.pk]) in page
    assert reverse("card:card", args=[rich.client.pk]) in page


def test_no_match_says_so(operator_http: HttpClient, rich: Rich) -> None:
    response = operator_http.get(reverse("card:search"), {"q": "8 (900) 000-00-01"})

    assert response.status_code == 200
    assert response.context["results"] == []
    assert "Nobody found" in response.content.decode()


def test_empty_search_shows_the_form(operator_http: HttpClient) -> None:
    response = operator_http.get(reverse("card:search"))

    assert response.status_code == 200
    assert 'name="q"' in response.content.decode()
