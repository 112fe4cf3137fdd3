"""The segments REST API: catalog, create and read back rules, count, members, preview."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from rest_framework.test import APIClient

from crm.roles import INTEGRATION, MARKETER, OPERATOR
from segments.models import Segment
from segments.services import segment_add_clients, segment_refresh_membership, segment_save
from tests.segments.conftest import World

pytestmark = pytest.mark.django_db

URL = "/api/v1/segments/"
WOMEN_IN_SPB: dict[str, Any] = {
    "match": "all",
    "rules": [
        {"field": "gender", "operator": "in", "value": ["f"]},
        {"field": "city", "operator": "in", "value": ["Санкт-Петербург"]},
    ],
}


def api(role: str | None = MARKETER) -> APIClient:
    user = User.objects.create_user(
        username=f"u-{role}-{User.objects.count()}", password="x", is_staff=True
    )
    if role:
        user.groups.add(Group.objects.get(name=role))
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    client.force_authenticate(user)
    return client


def test_fields_lists_the_catalog() -> None:
    response = api().get(f"{URL}fields/")
    assert response.status_code == 200
    fields = {f["key"]: f for f in response.json()["fields"]}
    assert {"age", "consent", "bought_category", "event", "birthday", "segment"} <= set(fields)
    assert [op["key"] for op in fields["bought_category"]["operators"]] == ["any_of", "none_of"]
    assert fields["bought_category"]["params"][0]["name"] == "period"


def test_create_and_read_back_the_same_rules(world: World) -> None:
    http = api()
    created = http.post(
        URL, {"name": "Women in SPb", "rules": WOMEN_IN_SPB, "auto_refresh": True}, format="json"
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    segment_id = body["id"]
    assert body["explanation"] == "gender is female AND city is «Санкт-Петербург»"

    read = http.get(f"{URL}{segment_id}/").json()
    assert read["rules"] == {
        "match": "all",
        "negate": False,
        "rules": [{**r, "negate": False} for r in WOMEN_IN_SPB["rules"]],
    }
    # What was read back is accepted again unchanged.
    again = http.patch(f"{URL}{segment_id}/", {"rules": read["rules"]}, format="json")
    assert again.status_code == 200 and again.json()["rules"] == read["rules"]
    assert [s["name"] for s in http.get(URL).json()["results"]] == ["Women in SPb"]


def test_invalid_rules_answer_400_naming_the_rule(world: World) -> None:
    bad = {"match": "all", "rules": [{"field": "age", "operator": "gte", "value": "many"}]}
    response = api().post(URL, {"name": "Bad", "rules": bad}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"index": None, "field": "rules", "message": "rules[0].value: expected a whole number"}
    ]
    assert not Segment.objects.exists()


def test_count_and_members_live_and_snapshot(world: World) -> None:
    segment = segment_save(segment=Segment(name="Women in SPb"), rules=WOMEN_IN_SPB)
    http = api(OPERATOR)

    count = http.get(f"{URL}{segment.pk}/count/").json()
    assert count == {
        "id": segment.pk,
        "count": 2,
        "snapshot_count": None,
        "snapshot_taken_at": None,
    }
    page = http.get(f"{URL}{segment.pk}/members/", {"page_size": 1}).json()
    assert page["results"] == [{"id": world.vera.pk, "external_id": "vera"}]
    second = http.get(page["next"]).json()
    assert second["results"] == [{"id": world.anna.pk, "external_id": "anna"}]
    assert http.get(f"{URL}{segment.pk}/members/", {"snapshot": "true"}).json()["results"] == []
    segment_refresh_membership(segment=segment)
    snap = http.get(f"{URL}{segment.pk}/members/", {"snapshot": "true"}).json()["results"]
    assert [m["external_id"] for m in snap] == ["vera", "anna"]
    assert http.get(f"{URL}{segment.pk}/count/").json()["snapshot_count"] == 2


def test_members_of_a_static_segment(world: World) -> None:
    segment = segment_save(segment=Segment(name="VIP", kind="static"))
    segment_add_clients(segment=segment, clients=[world.boris.pk])
    response = api().get(f"{URL}{segment.pk}/members/")
    assert response.json()["results"] == [{"id": world.boris.pk, "external_id": "boris"}]


def test_preview_counts_and_samples_and_stores_nothing(
    world: World, django_assert_max_num_queries: Any
) -> None:
    http = api()
    with django_assert_max_num_queries(12):
        response = http.post(
            f"{URL}preview/", {"rules": WOMEN_IN_SPB, "sample_size": 5}, format="json"
        )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["count"] == 2
    assert [c["external_id"] for c in body["sample"]] == ["vera", "anna"]
    assert body["explanation"] == "gender is female AND city is «Санкт-Петербург»"
    assert not Segment.objects.exists()

    bad = http.post(
        f"{URL}preview/", {"rules": {"match": "all", "rules": [{"field": "x"}]}}, format="json"
    )
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["message"] == "rules[0].field: unknown field 'x'"


def test_permissions_follow_roles(world: World) -> None:
    assert api(OPERATOR).get(URL).status_code == 200
    assert api(OPERATOR).post(URL, {"name": "X"}, format="json").status_code == 403
    assert api(INTEGRATION).get(URL).status_code == 403
    assert api(None).get(f"{URL}fields/").status_code == 403
    assert APIClient().get(URL).status_code in (401, 403)
