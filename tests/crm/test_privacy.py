"""Personal data (152-FZ): export, anonymization, retention, and their admin pages."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from decimal import Decimal
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, User
from django.db import connection
from django.db.models import Model, QuerySet
from django.test import Client as HttpClient
from django.urls import reverse
from django.utils import timezone

from crm import privacy
from crm.models import (
    AuditLog,
    Child,
    Client,
    Consent,
    ConsentEvent,
    Event,
    Interest,
    Pet,
    Purchase,
    PurchaseItem,
)
from crm.roles import MARKETER, OPERATOR
from crm.services import ConsentChange, consent_record_many
from loyalty.models import LoyaltyAccount, PointsEntry
from offers.models import PromoCode
from segments.models import Segment, SegmentMember
from tests.factories import (
    ClientFactory,
    LoyaltyAccountFactory,
    OfferFactory,
    ProductFactory,
    PromoPoolFactory,
    PurchaseFactory,
    PurchaseItemFactory,
    SegmentFactory,
)

pytestmark = pytest.mark.django_db

NOW = timezone.now()


def consent(client: Client, channel: str, action: str, days_ago: float, **kw: Any) -> None:
    consent_record_many(
        changes=[
            ConsentChange(
                client_id=client.pk,
                channel=channel,
                purpose="marketing",
                action=action,
                source=kw.pop("source", "store"),
                wording_version=kw.pop("wording_version", "v1"),
                occurred_at=NOW - dt.timedelta(days=days_ago),
                **kw,
            )
        ]
    )


def rich_client() -> Client:
    """A client with something in every section."""
    client = ClientFactory(
        last_name="Иванова",
        first_name="Анна",
        middle_name="Петровна",
        gender="f",
        birth_date=dt.date(1985, 3, 8),
        phone="+79161234567",
        email="anna@example.ru",
        city="Москва",
        region="Тверской",
        occupation="врач",
        family_status="married",
        education="higher",
        preferred_channel="sms",
        attributes={"card": "1234 5678", "note": "любит кошек"},
        external_id="POS-777",
    )
    client.interests.add(Interest.objects.create(name="кошки"))
    Child.objects.create(client=client, birth_year=2015, gender="m")
    Pet.objects.create(client=client, kind="cat", name="Мурка")
    consent(client, "sms", "granted", 30, evidence="форма #55")
    consent(client, "email", "granted", 20)
    consent(client, "email", "withdrawn", 10)
    product = ProductFactory(sku="CAT-1", name="Корм для кошек")
    purchase = PurchaseFactory(client=client, total=Decimal("1500.00"), external_id="R-1")
    PurchaseItemFactory(purchase=purchase, product=product, unit_price=Decimal("1500.00"))
    account = LoyaltyAccountFactory(client=client, balance=15)
    PointsEntry.objects.create(account=account, kind="earn", points=15, purchase=purchase)
    Event.objects.create(
        client=client,
        type="search",
        occurred_at=NOW - dt.timedelta(days=2),
        payload={"query": "корм для Мурки", "phone": "+79161234567"},
    )
    segment = SegmentFactory(name="Кошатники", kind="static")
    SegmentMember.objects.create(segment=segment, client=client, added_at=NOW)
    Segment.objects.filter(pk=segment.pk).update(member_count=1)
    pool = PromoPoolFactory()
    PromoCode.objects.create(
        pool=pool, code="LX-CAT12345", client=client, offer=OfferFactory(), assigned_at=NOW
    )
    AuditLog.objects.create(action="card_viewed", client=client)
    return client


def staff(role: str | None = None, *, superuser: bool = False) -> User:
    name = "root" if superuser else (role or "nobody").lower()
    user = User.objects.create_user(
        username=name, password="x", is_staff=True, is_superuser=superuser
    )
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


def browser(user: User) -> HttpClient:
    http = HttpClient()
    http.force_login(user)
    return http


# Export -----------------------------------------------------------------------------------------


def test_export_holds_everything_stored_about_the_client() -> None:
    client = rich_client()
    other = ClientFactory()

    data = privacy.personal_data_collect(client_ids=[client.pk])

    assert data["format"] == "lichno-personal-data/1"
    assert [c["client_id"] for c in data["clients"]] == [client.pk]
    got = data["clients"][0]
    assert {s["name"] for s in data["sections"]} >= {
        "profile",
        "children",
        "pets",
        "consents",
        "consent_history",
        "purchases",
        "purchase_items",
        "events",
        "audit_log",
        "loyalty_account",
        "points_ledger",
        "segments",
        "promo_codes",
    }
    profile = got["profile"]
    assert profile["last_name"] == "Иванова"
    assert profile["phone"] == "+79161234567"
    assert profile["email"] == "anna@example.ru"
    assert profile["birth_date"] == "1985-03-08"
    assert profile["external_id"] == "POS-777"
    assert profile["attributes"] == {"card": "1234 5678", "note": "любит кошек"}
    assert profile["interests"] == ["кошки"]
    assert got["children"] == [{"birth_year": 2015, "gender": "m"}]
    assert got["pets"] == [{"kind": "cat", "name": "Мурка"}]
    assert {(c["channel"], c["is_granted"]) for c in got["consents"]} == {
        ("sms", True),
        ("email", False),
    }
    assert [(e["channel"], e["action"]) for e in got["consent_history"]] == [
        ("sms", "granted"),
        ("email", "granted"),
        ("email", "withdrawn"),
    ]
    assert got["consent_history"][0]["evidence"] == "форма #55"
    assert [(p["external_id"], p["total"]) for p in got["purchases"]] == [("R-1", "1500.00")]
    assert [(i["product__sku"], i["unit_price"]) for i in got["purchase_items"]] == [
        ("CAT-1", "1500.00")
    ]
    assert got["events"][0]["payload"]["query"] == "корм для Мурки"
    assert got["loyalty_account"]["balance"] == 15
    assert [(e["kind"], e["points"]) for e in got["points_ledger"]] == [("earn", 15)]
    assert [s["segment__name"] for s in got["segments"]] == ["Кошатники"]
    assert [p["code"] for p in got["promo_codes"]] == ["LX-CAT12345"]
    assert [a["action"] for a in got["audit_log"]] == ["card_viewed"]
    # Nothing of the other client.
    assert str(other.phone) not in privacy.personal_data_to_json(data).decode()


def test_export_is_audited_and_its_queries_do_not_grow_with_clients(
    django_assert_max_num_queries: Any,
) -> None:
    clients = [rich_client()] + ClientFactory.create_batch(30)
    user = staff(MARKETER)
    for client in clients[1:]:
        PurchaseFactory(client=client)

    # One query per registered section (every app adds its own) and a few fixed ones: the same
    # for one client as for 31.
    bound = len(privacy.sections()) + 6
    with django_assert_max_num_queries(bound):
        privacy.personal_data_export(client_ids=[clients[0].pk], actor=user, file_format="json")
    with django_assert_max_num_queries(bound):
        data = privacy.personal_data_export(
            client_ids=[c.pk for c in clients], actor=user, file_format="json"
        )

    assert len(data["clients"]) == 31
    entries = AuditLog.objects.filter(action="data_exported")
    assert entries.count() == 32
    assert set(entries.values_list("actor__username", flat=True)) == {"marketer"}
    entry = entries.first()
    assert entry is not None
    assert entry.changes == {"scope": "personal_data", "format": "json"}


def test_csv_export_is_one_long_table_safe_for_spreadsheets() -> None:
    client = ClientFactory(first_name="=HYPERLINK(1)", last_name="+cmd|x", attributes={"a": [1, 2]})

    text = privacy.personal_data_to_csv(privacy.personal_data_collect(client_ids=[client.pk]))

    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["client_id", "section", "row", "field", "value"]
    cells = {(r[1], r[3]): r[4] for r in rows[1:]}
    assert cells[("profile", "first_name")] == "'=HYPERLINK(1)"
    assert cells[("profile", "last_name")] == "'+cmd|x"
    assert cells[("profile", "attributes")] == '{"a": [1, 2]}'
    assert cells[("profile", "phone")] == client.phone.as_e164


def test_a_registered_section_joins_export_and_anonymization() -> None:
    seen: list[list[int]] = []
    section = privacy.Section(
        name="test_notes",
        label="notes",
        export=lambda ids: [{"client_id": i, "note": f"n{i}"} for i in ids],
        anonymize=lambda ids: seen.append(list(ids)),
    )
    privacy.register(section)
    try:
        client = ClientFactory()
        data = privacy.personal_data_collect(client_ids=[client.pk])
        assert data["clients"][0]["test_notes"] == [{"note": f"n{client.pk}"}]
        privacy.client_anonymize_many(client_ids=[client.pk])
        assert seen == [[client.pk]]
        with pytest.raises(Exception, match="registered twice"):
            privacy.register(privacy.Section("test_notes", "x", lambda ids: []))
    finally:
        privacy.unregister("test_notes")


# Anonymization ----------------------------------------------------------------------------------


def test_anonymization_removes_personal_data_and_keeps_facts() -> None:
    client = rich_client()
    bystander = ClientFactory(first_name="Пётр")
    consent(bystander, "sms", "granted", 5)
    user = staff(MARKETER)
    events_before = ConsentEvent.objects.count()

    done = privacy.client_anonymize_many(client_ids=[client.pk], actor=user)

    assert done == [client.pk]
    client.refresh_from_db()
    # Every personal field is gone...
    for name in (
        "last_name",
        "first_name",
        "middle_name",
        "email",
        "region",
        "occupation",
        "family_status",
        "education",
        "preferred_channel",
    ):
        assert getattr(client, name) == "", name
    assert client.phone in ("", None)
    assert client.birth_date is None
    assert client.external_id is None
    assert client.attributes == {}
    assert list(client.interests.all()) == []
    assert not Child.objects.filter(client=client).exists()
    assert list(Pet.objects.filter(client=client).values_list("kind", "name")) == [("cat", "")]
    assert list(Event.objects.filter(client=client).values_list("type", "payload")) == [
        ("search", {})
    ]
    assert not SegmentMember.objects.filter(client=client).exists()
    assert Segment.objects.get(name="Кошатники").member_count == 0
    assert str(client) == f"#{client.pk}"
    # ...the flag is set, coarse attributes and facts stay.
    assert client.is_anonymized and client.anonymized_at is not None
    assert (client.gender, client.city) == ("f", "Москва")
    assert Purchase.objects.get(client=client).total == Decimal("1500.00")
    assert PurchaseItem.objects.filter(client=client).count() == 1
    assert LoyaltyAccount.objects.get(client=client).balance == 15
    assert PointsEntry.objects.filter(account__client=client).count() == 1
    assert PromoCode.objects.get(code="LX-CAT12345").client_id == client.pk
    # Consents: every granted one withdrawn by appending history, none rewritten.
    assert not Consent.objects.filter(client=client, is_granted=True).exists()
    appended = ConsentEvent.objects.order_by("id")[events_before:]
    assert [(e.client_id, e.channel, e.action, e.source, e.actor_id) for e in appended] == [
        (client.pk, "sms", "withdrawn", "anonymization", user.pk)
    ]
    # Audited, once.
    entry = AuditLog.objects.get(action="client_anonymized")
    assert (entry.client_id, entry.actor_id, entry.changes) == (
        client.pk,
        user.pk,
        {"reason": "request"},
    )
    # The bystander is untouched.
    bystander.refresh_from_db()
    assert bystander.first_name == "Пётр" and not bystander.is_anonymized
    assert Consent.objects.get(client=bystander).is_granted


def test_anonymization_is_irreversible_and_idempotent() -> None:
    client = rich_client()
    privacy.client_anonymize_many(client_ids=[client.pk])

    again = privacy.client_anonymize_many(client_ids=[client.pk])

    assert again == []
    assert AuditLog.objects.filter(action="client_anonymized").count() == 1


def test_anonymization_frees_the_external_id_for_a_new_client() -> None:
    from crm.bulk import client_upsert_many

    client = rich_client()
    privacy.client_anonymize_many(client_ids=[client.pk])

    result = client_upsert_many(rows=[{"external_id": "POS-777", "first_name": "Анна"}])

    assert result.created == 1
    client.refresh_from_db()
    assert client.first_name == "" and client.external_id is None
    assert Client.objects.get(external_id="POS-777").pk != client.pk


def test_anonymization_withdraws_a_consent_stamped_minutes_ahead() -> None:
    client = ClientFactory()
    consent(client, "call", "granted", -3 / 24 / 60)  # three minutes in the future

    privacy.client_anonymize_many(client_ids=[client.pk])

    assert not Consent.objects.get(client=client).is_granted


def test_anonymization_is_set_based(django_assert_max_num_queries: Any) -> None:
    clients = ClientFactory.create_batch(150)
    segment = SegmentFactory(kind="static")
    for client in clients:
        Child.objects.create(client=client, birth_year=2010)
        Pet.objects.create(client=client, kind="dog", name="Шарик")
        consent(client, "sms", "granted", 3)
        Event.objects.create(client=client, type="app_open", occurred_at=NOW, payload={"x": 1})
        SegmentMember.objects.create(segment=segment, client=client, added_at=NOW)
    ids = [c.pk for c in clients]

    # A fixed few per section and batch (26: messaging finds gateway events by the clients'
    # numbers in two statements; SQLite splits the consent-history insert in two).
    with django_assert_max_num_queries(26):
        done = privacy.client_anonymize_many(client_ids=ids)

    assert len(done) == 150
    assert Client.objects.filter(pk__in=ids, is_anonymized=True).count() == 150
    assert not Consent.objects.filter(client_id__in=ids, is_granted=True).exists()
    assert AuditLog.objects.filter(action="client_anonymized").count() == 150
    assert not Child.objects.exists() and not SegmentMember.objects.exists()


# Retention --------------------------------------------------------------------------------------


def aged(client: Client, years: float) -> Client:
    Client.objects.filter(pk=client.pk).update(created_at=NOW - dt.timedelta(days=365.25 * years))
    return client


def test_retention_picks_exactly_the_inactive_clients_without_consent() -> None:
    old_silent = aged(ClientFactory(), 5)
    new_client = aged(ClientFactory(), 1)
    recent_buyer = aged(ClientFactory(), 5)
    PurchaseFactory(client=recent_buyer, purchased_at=NOW - dt.timedelta(days=100))
    old_buyer = aged(ClientFactory(), 5)
    PurchaseFactory(client=old_buyer, purchased_at=NOW - dt.timedelta(days=4 * 365))
    recent_event = aged(ClientFactory(), 5)
    Event.objects.create(
        client=recent_event, type="app_open", occurred_at=NOW - dt.timedelta(days=30)
    )
    consenting = aged(ClientFactory(), 5)
    consent(consenting, "sms", "granted", 4 * 365)  # old, but still granted
    withdrew_recently = aged(ClientFactory(), 5)
    consent(withdrew_recently, "sms", "granted", 4 * 365)
    consent(withdrew_recently, "sms", "withdrawn", 200)
    withdrew_long_ago = aged(ClientFactory(), 5)
    consent(withdrew_long_ago, "sms", "granted", 5 * 365)
    consent(withdrew_long_ago, "sms", "withdrawn", 4 * 365)
    already = aged(ClientFactory(), 5)
    privacy.client_anonymize_many(client_ids=[already.pk])

    cutoff = privacy.retention_cutoff(now=NOW, years=3)
    picked = set(privacy.retention_candidates(cutoff=cutoff).values_list("pk", flat=True))

    assert picked == {old_silent.pk, old_buyer.pk, withdrew_long_ago.pk}
    del new_client, recent_buyer, recent_event, consenting, withdrew_recently


def test_retention_anonymizes_in_batches_and_says_when_more_remain(settings: Any) -> None:
    settings.PRIVACY_RETENTION_YEARS = 3
    clients = [aged(ClientFactory(), 4) for _ in range(7)]

    first = privacy.retention_anonymize(now=NOW, batch_size=3, max_batches=2)
    second = privacy.retention_anonymize(now=NOW, batch_size=3, max_batches=2)

    assert (first.anonymized, first.more) == (6, True)
    assert (second.anonymized, second.more) == (1, False)
    assert Client.objects.filter(is_anonymized=True).count() == len(clients)
    entry = AuditLog.objects.filter(action="client_anonymized").first()
    assert entry is not None
    assert (entry.actor_id, entry.actor_label) == (None, "retention")
    assert entry.changes == {"reason": "retention: 3 years"}


def test_retention_off_when_years_is_zero(settings: Any) -> None:
    settings.PRIVACY_RETENTION_YEARS = 0
    aged(ClientFactory(), 10)

    assert privacy.retention_anonymize(now=NOW) == privacy.RetentionResult(0, False)
    assert not Client.objects.filter(is_anonymized=True).exists()


def test_retention_task_runs_the_service_and_is_scheduled(settings: Any) -> None:
    from crm.schedules import collect_schedules
    from crm.tasks import privacy_retention

    settings.PRIVACY_RETENTION_YEARS = 3
    client = aged(ClientFactory(), 4)

    assert privacy_retention.apply().get() == 1

    client.refresh_from_db()
    assert client.is_anonymized
    names = {s.name: s.task for s in collect_schedules()}
    assert names["crm: personal data retention"] == "crm.tasks.privacy_retention"


def test_retention_cutoff_on_29_february() -> None:
    leap = dt.datetime(2028, 2, 29, 12, tzinfo=dt.UTC)
    assert privacy.retention_cutoff(now=leap, years=3) == dt.datetime(
        2025, 2, 28, 12, tzinfo=dt.UTC
    )


# Admin ------------------------------------------------------------------------------------------


def test_change_page_buttons_download_json_and_csv_and_audit() -> None:
    client = rich_client()
    http = browser(staff(MARKETER))

    page = http.get(reverse("admin:crm_client_change", args=[client.pk]))
    json_url = reverse("admin:crm_client_personal_data", args=[client.pk, "json"])
    csv_url = reverse("admin:crm_client_personal_data", args=[client.pk, "csv"])
    anonymize_url = reverse("admin:crm_client_anonymize", args=[client.pk])
    assert json_url in page.content.decode()
    assert anonymize_url in page.content.decode()

    response = http.get(json_url)
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith('attachment; filename="personal-data-client')
    assert json.loads(response.content)["clients"][0]["profile"]["last_name"] == "Иванова"
    response = http.get(csv_url)
    assert response.status_code == 200
    assert response.content.decode("utf-8-sig").startswith("client_id,section,row,field,value")
    assert AuditLog.objects.filter(action="data_exported", client=client).count() == 2


def test_anonymize_page_confirms_then_anonymizes() -> None:
    client = rich_client()
    http = browser(staff(MARKETER))
    url = reverse("admin:crm_client_anonymize", args=[client.pk])

    page = http.get(url)
    assert page.status_code == 200
    assert "This cannot be undone" in page.content.decode() or "необратимо" in (
        page.content.decode()
    )
    client.refresh_from_db()
    assert not client.is_anonymized  # a GET only asks

    response = http.post(url, {"confirm": "yes"})

    assert response.status_code == 302
    client.refresh_from_db()
    assert client.is_anonymized and client.last_name == ""
    # The anonymized record is closed: its page is read-only and offers no second anonymization.
    page = http.get(reverse("admin:crm_client_change", args=[client.pk]))
    assert page.status_code == 200
    assert url not in page.content.decode()
    assert 'name="last_name"' not in page.content.decode()


def test_changelist_actions_export_and_anonymize_a_selection() -> None:
    first, second, untouched = ClientFactory(), ClientFactory(), ClientFactory()
    http = browser(staff(superuser=True))
    url = reverse("admin:crm_client_changelist")
    selected = {"_selected_action": [first.pk, second.pk], "index": 0}

    exported = http.post(url, {**selected, "action": "export_personal_data_json"})
    assert exported.status_code == 200
    ids = [c["client_id"] for c in json.loads(exported.content)["clients"]]
    assert ids == [first.pk, second.pk]

    confirm = http.post(url, {**selected, "action": "anonymize_selected"})
    assert confirm.status_code == 200
    assert confirm.templates[0].name == "admin/crm/client/anonymize_confirmation.html"
    assert not Client.objects.filter(is_anonymized=True).exists()

    done = http.post(url, {**selected, "action": "anonymize_selected", "confirm": "yes"})
    assert done.status_code == 302
    assert set(Client.objects.filter(is_anonymized=True).values_list("pk", flat=True)) == {
        first.pk,
        second.pk,
    }
    untouched.refresh_from_db()
    assert not untouched.is_anonymized


def test_operator_can_neither_export_nor_anonymize() -> None:
    client = rich_client()
    http = browser(staff(OPERATOR))

    page = http.get(reverse("admin:crm_client_change", args=[client.pk]))
    assert page.status_code == 200
    assert "personal-data" not in page.content.decode()
    changelist = http.get(reverse("admin:crm_client_changelist"))
    actions = dict(changelist.context["action_form"].fields["action"].choices)
    assert not {"export_personal_data_json", "anonymize_selected"} & set(actions)

    for url in (
        reverse("admin:crm_client_personal_data", args=[client.pk, "json"]),
        reverse("admin:crm_client_anonymize", args=[client.pk]),
    ):
        assert http.get(url).status_code == 403
        assert http.post(url, {"confirm": "yes"}).status_code == 403
    response = http.post(
        reverse("admin:crm_client_changelist"),
        {"_selected_action": [client.pk], "action": "anonymize_selected", "confirm": "yes"},
    )
    client.refresh_from_db()
    assert not client.is_anonymized
    assert response.status_code in (200, 302)
    assert not AuditLog.objects.filter(action__in=["data_exported", "client_anonymized"]).exists()


def test_anonymization_query_count_is_the_same_on_postgresql(
    postgres: None, django_assert_max_num_queries: Any
) -> None:
    clients = ClientFactory.create_batch(50)
    for client in clients:
        consent(client, "email", "granted", 1)

    with django_assert_max_num_queries(25):
        privacy.client_anonymize_many(client_ids=[c.pk for c in clients])

    assert connection.vendor == "postgresql"
    assert Client.objects.filter(is_anonymized=True).count() == 50


def test_a_large_selection_is_anonymized_by_tasks_in_chunks(
    django_capture_on_commit_callbacks: Any,
) -> None:
    from crm.tasks import client_anonymize, client_anonymize_enqueue

    clients = ClientFactory.create_batch(5)
    ids = [c.pk for c in clients]

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert client_anonymize_enqueue(client_ids=ids + ids, actor_id=None, chunk_size=2) == 5
    chunks = [cb.keywords["kwargs"]["client_ids"] for cb in callbacks]
    assert chunks == [ids[0:2], ids[2:4], ids[4:5]]

    user = staff(MARKETER)
    assert client_anonymize.apply(kwargs={"client_ids": ids, "actor_id": user.pk}).get() == 5
    assert client_anonymize.apply(kwargs={"client_ids": ids, "actor_id": user.pk}).get() == 0
    assert set(
        AuditLog.objects.filter(action="client_anonymized").values_list("actor", flat=True)
    ) == {user.pk}


def _refers_to_client(model: type[Model]) -> bool:
    """A row about a client: a relation to Client, or to a model that has one (a click on a
    message, an entry on a loyalty account)."""

    def direct(m: type[Model]) -> bool:
        return any(
            f.is_relation and f.concrete and f.related_model is Client for f in m._meta.get_fields()
        )

    return direct(model) or any(
        f.is_relation and f.concrete and f.related_model is not None and direct(f.related_model)
        for f in model._meta.get_fields()
    )


def test_every_table_about_a_client_belongs_to_a_personal_data_section() -> None:
    covered = {model for section in privacy.sections() for model in section.models}

    missing = [
        m._meta.label for m in apps.get_models() if _refers_to_client(m) and m not in covered
    ]

    assert missing == []
    assert Client in covered


def test_a_section_declares_the_table_it_exports() -> None:
    for section in privacy.sections():
        rows = section.export([])
        if isinstance(rows, QuerySet):
            assert rows.model in section.models, section.name
