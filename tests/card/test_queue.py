"""The callback queue (oldest first, taken once) and the incoming-call pop-up."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from django.db import connection
from django.test import Client as HttpClient
from django.urls import reverse
from django.utils import timezone

from crm.models import OperatorProfile
from messaging.models import (
    Call,
    CallbackRequest,
    CallbackSource,
    CallbackStatus,
    CallDirection,
    CallState,
)
from messaging.services.operator import callback_take
from tests.card.conftest import Rich, make_rich_client, user_in
from tests.factories import ClientFactory


def _request(client: Any, offer: Any = None, *, minutes_ago: int, reason: str = "") -> Any:
    request = CallbackRequest.objects.create(
        client=client, offer=offer, reason=reason, source=CallbackSource.IVR
    )
    # created_at is auto_now_add: set the age explicitly for the ordering.
    CallbackRequest.objects.filter(pk=request.pk).update(
        created_at=timezone.now() - dt.timedelta(minutes=minutes_ago)
    )
    return request


@pytest.mark.django_db
def test_queue_lists_open_requests_oldest_first_with_offer_and_reason(
    operator_http: HttpClient, rich: Rich
) -> None:
    newer = _request(ClientFactory(), minutes_ago=1)
    older = _request(rich.client, rich.offer, minutes_ago=30, reason="Вы покупали корм")
    CallbackRequest.objects.create(
        client=rich.client, source=CallbackSource.WEB, status=CallbackStatus.DONE
    )

    response = operator_http.get(reverse("card:queue"))

    assert [r.pk for r in response.context["requests"]] == [older.pk, newer.pk]
    page = response.content.decode()
    assert "Корм со скидкой" in page and "Вы покупали корм" in page
    assert "pressed 1 in an autodial call" in page


@pytest.mark.django_db
def test_taking_opens_the_card_once(operator: Any, operator_http: HttpClient, rich: Rich) -> None:
    request = _request(rich.client, rich.offer, minutes_ago=5, reason="Вы покупали корм")

    taken = operator_http.post(reverse("card:take", args=[request.pk]))

    card_url = reverse("card:card", args=[rich.client.pk])
    assert taken["Location"] == f"{card_url}?callback={request.pk}"
    request.refresh_from_db()
    assert (request.status, request.taken_by_id) == (CallbackStatus.TAKEN, operator.pk)
    card = operator_http.get(taken["Location"]).content.decode()
    assert "Call back requested" in card and "Вы покупали корм" in card

    other = HttpClient()
    other.force_login(user_in("Operator", "operator2"))
    again = other.post(reverse("card:take", args=[request.pk]), follow=True)
    assert "Another operator has already taken this request." in again.content.decode()
    request.refresh_from_db()
    assert request.taken_by_id == operator.pk


@pytest.mark.django_db(transaction=True)
def test_two_operators_taking_at_once_never_both_get_it(postgres: None) -> None:
    """Real concurrency on PostgreSQL: many rounds of two threads racing for one request."""
    first, second = user_in("Operator", "op-a"), user_in("Operator", "op-b")
    client = make_rich_client(purchases=0, messages=0).client
    requests = [_request(client, minutes_ago=1) for _ in range(20)]
    wins: dict[int, list[int]] = {r.pk: [] for r in requests}

    def race(user: Any, barrier: threading.Barrier, request_id: int) -> None:
        try:
            barrier.wait(timeout=10)
            if callback_take(request_id=request_id, user=user):
                wins[request_id].append(user.pk)
        finally:
            connection.close()

    for request in requests:
        barrier = threading.Barrier(2)
        threads = [
            threading.Thread(target=race, args=(user, barrier, request.pk))
            for user in (first, second)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

    assert all(len(winners) == 1 for winners in wins.values()), wins
    taken_by = dict(CallbackRequest.objects.values_list("pk", "taken_by_id"))
    assert taken_by == {pk: winners[0] for pk, winners in wins.items()}


@pytest.mark.django_db
def test_take_needs_the_permission(rich: Rich) -> None:
    request = _request(rich.client, minutes_ago=1)
    http = HttpClient()
    http.force_login(user_in("Marketer", "marketer1"))

    assert http.post(reverse("card:take", args=[request.pk])).status_code == 403
    request.refresh_from_db()
    assert request.status == CallbackStatus.OPEN


# Incoming calls ----------------------------------------------------------------------------------


def _ringing(client: Any, *, extension: str = "101", seconds_ago: int = 5, **kw: Any) -> Call:
    return Call.objects.create(
        provider="test-pbx",
        call_id=f"c-{Call.objects.count() + 1}",
        direction=kw.pop("direction", CallDirection.INBOUND),
        from_number="+79123456789",
        to_number="+74950000000",
        extension=extension,
        client=client,
        state=kw.pop("state", CallState.RINGING),
        started_at=timezone.now() - dt.timedelta(seconds=seconds_ago),
    )


@pytest.mark.django_db
def test_a_ringing_call_pops_up_for_its_extension(
    operator: Any, operator_http: HttpClient, rich: Rich
) -> None:
    call = _ringing(rich.client)

    data = operator_http.get(reverse("card:incoming"), {"ext": "101"}).json()

    assert data["call"]["call_id"] == call.pk
    assert data["call"]["client"] == "Смирнова Анна Петровна"
    assert data["call"]["url"] == reverse("card:card", args=[rich.client.pk]) + "?direction=in"
    # Without ?ext= the operator's own extension is used.
    OperatorProfile.objects.create(user=operator, extension="101")
    assert operator_http.get(reverse("card:incoming")).json()["call"]["call_id"] == call.pk


@pytest.mark.django_db
def test_no_pop_up_for_old_answered_outgoing_or_other_extensions(
    operator_http: HttpClient, rich: Rich
) -> None:
    _ringing(rich.client, seconds_ago=90)
    _ringing(rich.client, state=CallState.ANSWERED)
    _ringing(rich.client, direction=CallDirection.OUTBOUND)
    _ringing(rich.client, extension="102")

    data = operator_http.get(reverse("card:incoming"), {"ext": "101"}).json()

    assert data["call"] is None


@pytest.mark.django_db
def test_an_unknown_caller_pops_up_as_a_search(operator_http: HttpClient) -> None:
    _ringing(None)

    call = operator_http.get(reverse("card:incoming"), {"ext": "101"}).json()["call"]

    assert call["client_id"] is None
    assert call["url"] == reverse("card:search") + "?q=%2B79123456789"
