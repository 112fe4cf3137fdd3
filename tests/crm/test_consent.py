"""Consent: history is append-only, the current state is derived from it by one service."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import DatabaseError, IntegrityError, connections, transaction
from django.utils import timezone

from crm.models import Consent, ConsentEvent
from crm.services import ConsentChange, ConsentError, consent_record, consent_record_many
from tests.factories import ClientFactory

pytestmark = pytest.mark.django_db

T0 = timezone.now() - dt.timedelta(days=10)


def change(client_id: int, action: str, at: dt.datetime, **kw: str) -> ConsentChange:
    return ConsentChange(
        client_id=client_id,
        channel=kw.get("channel", "sms"),
        purpose=kw.get("purpose", "marketing"),
        action=action,
        source=kw.get("source", "store"),
        wording_version="2026-01",
        occurred_at=at,
    )


def test_grant_then_withdraw_leaves_withdrawn_state_and_full_history() -> None:
    client = ClientFactory()
    consent_record_many(changes=[change(client.pk, "granted", T0)])
    consent_record(
        client=client,
        channel="sms",
        purpose="marketing",
        action="withdrawn",
        source="inbound_sms",
        wording_version="2026-01",
        occurred_at=T0 + dt.timedelta(days=1),
        evidence="СТОП",
    )

    state = Consent.objects.get(client=client)
    assert (state.is_granted, state.source, state.changed_at) == (
        False,
        "inbound_sms",
        T0 + dt.timedelta(days=1),
    )
    assert list(
        ConsentEvent.objects.filter(client=client)
        .order_by("occurred_at")
        .values_list("action", flat=True)
    ) == ["granted", "withdrawn"]


def test_an_older_event_arriving_late_does_not_override_the_newer_state() -> None:
    client = ClientFactory()
    consent_record_many(changes=[change(client.pk, "withdrawn", T0 + dt.timedelta(days=2))])

    consent_record_many(changes=[change(client.pk, "granted", T0)])  # imported late

    state = Consent.objects.get(client=client)
    assert state.is_granted is False
    assert state.changed_at == T0 + dt.timedelta(days=2)
    assert ConsentEvent.objects.filter(client=client).count() == 2


def test_batch_derives_each_key_from_its_latest_event_in_bounded_queries(
    django_assert_max_num_queries: object,
) -> None:
    clients = ClientFactory.create_batch(20)
    changes = []
    for c in clients:
        changes += [
            change(c.pk, "granted", T0, channel="sms"),
            change(c.pk, "withdrawn", T0 + dt.timedelta(hours=1), channel="sms"),
            change(c.pk, "granted", T0, channel="email"),
        ]
    # 4 to record and derive the state, 1 for messaging's hook that cancels messages queued on
    # the withdrawn consents (DESIGN invariant 1).
    with django_assert_max_num_queries(5):  # type: ignore[operator]
        consent_record_many(changes=changes)

    assert Consent.objects.count() == 40
    assert not Consent.objects.filter(channel="sms", is_granted=True).exists()
    assert Consent.objects.filter(channel="email", is_granted=True).count() == 20


@pytest.mark.parametrize(
    ("field", "value"),
    [("channel", "fax"), ("purpose", "spam"), ("action", "maybe"), ("source", "rumour")],
)
def test_unknown_vocabulary_is_refused_naming_the_field(field: str, value: str) -> None:
    client = ClientFactory()
    bad = (
        change(client.pk, "granted", T0, **{field: value})
        if field != "action"
        else change(client.pk, value, T0)
    )
    with pytest.raises(ConsentError) as excinfo:
        consent_record_many(changes=[bad])
    assert field in excinfo.value.message_dict
    assert not ConsentEvent.objects.exists()
    assert not Consent.objects.exists()


def test_naive_and_future_times_are_refused() -> None:
    client = ClientFactory()
    with pytest.raises(ConsentError):
        consent_record_many(changes=[change(client.pk, "granted", dt.datetime(2026, 1, 1))])  # noqa: DTZ001
    with pytest.raises(ConsentError):
        consent_record_many(
            changes=[change(client.pk, "granted", timezone.now() + dt.timedelta(days=1))]
        )
    assert not ConsentEvent.objects.exists()


def test_consent_history_refuses_updates_in_the_database() -> None:
    client = ClientFactory()
    (event,) = consent_record_many(changes=[change(client.pk, "granted", T0)])

    with pytest.raises((IntegrityError, DatabaseError)), transaction.atomic():
        ConsentEvent.objects.filter(pk=event.pk).update(action="withdrawn")

    event.refresh_from_db()
    assert event.action == "granted"


@pytest.mark.django_db(transaction=True)
def test_consent_history_refuses_deletes_on_postgres(postgres: None) -> None:
    client = ClientFactory()
    (event,) = consent_record_many(changes=[change(client.pk, "granted", T0)])

    with pytest.raises(DatabaseError), transaction.atomic():
        ConsentEvent.objects.filter(pk=event.pk).delete()

    assert ConsentEvent.objects.filter(pk=event.pk).exists()


def _write_after_barrier(
    barrier: threading.Barrier, errors: list[BaseException], consent: ConsentChange
) -> None:
    try:
        barrier.wait(timeout=10)
        consent_record_many(changes=[consent])
    except BaseException as exc:  # noqa: BLE001 - reported by the test
        errors.append(exc)
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_converge_on_the_latest_event(postgres: None) -> None:
    """Two writers race on one key; whichever commits last, the state is the newest event."""
    client = ClientFactory()
    for attempt in range(5):
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []
        base = T0 + dt.timedelta(hours=attempt * 10)
        newest = base + dt.timedelta(hours=1)
        threads = [
            threading.Thread(
                target=_write_after_barrier,
                args=(barrier, errors, change(client.pk, action, at)),
            )
            for action, at in (("granted", base), ("withdrawn", newest))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        assert errors == []
        state = Consent.objects.get(client=client)
        assert (state.is_granted, state.changed_at) == (False, newest)
        assert ConsentEvent.objects.filter(client=client).count() == 2 * (attempt + 1)
