"""The segment admin: the builder page, saving rules, live preview, static lists, client action."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, cast

import pytest
from django.contrib.auth.models import Group, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client as HttpClient
from django.urls import reverse

from crm.models import Client
from crm.roles import MARKETER, OPERATOR
from segments.models import Segment, SegmentMember
from segments.services import segment_refresh_membership, segment_save
from tests.segments.conftest import World

pytestmark = pytest.mark.django_db

SPB_WOMEN = {
    "match": "all",
    "rules": [
        {"field": "gender", "operator": "in", "value": ["f"]},
        {"field": "city", "operator": "in", "value": ["Санкт-Петербург"]},
    ],
}


def browser(role: str) -> HttpClient:
    user = User.objects.create_user(username=role.lower(), password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    http = HttpClient(HTTP_ACCEPT_LANGUAGE="en")
    http.force_login(user)
    return http


def form_data(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "SPb women",
        "description": "",
        "kind": "rules",
        "rules": json.dumps(SPB_WOMEN),
        "auto_refresh": "on",
        **overrides,
    }


def test_add_page_has_the_builder_with_catalog_and_choices(world: World) -> None:
    page = browser(MARKETER).get(reverse("admin:segments_segment_add"))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="segment-builder-config"' in html
    assert "segments/rule-builder.js" in html
    config = page.context["adminform"].form.fields["rules"].widget.builder
    assert config["preview_url"] == reverse("admin:segments_segment_preview")
    assert {"category", "brand", "tier", "interest", "segment", "product", "city"} <= set(
        config["refs"]
    )
    assert [world.pets.pk, "Pets"] in config["refs"]["category"]
    assert [world.cat_food.pk, "— Cat food"] in config["refs"]["category"]


def test_marketer_saves_rules_and_sees_the_explanation(world: World) -> None:
    http = browser(MARKETER)
    response = http.post(reverse("admin:segments_segment_add"), form_data())
    assert response.status_code == 302, response.content.decode()[:3000]
    segment = Segment.objects.get()
    assert segment.rules["rules"][1]["value"] == ["Санкт-Петербург"]
    assert segment.created_by is not None
    assert segment.created_by.username == "marketer"
    page = http.get(reverse("admin:segments_segment_change", args=[segment.pk]))
    assert page.status_code == 200
    assert "gender is female AND city is «Санкт-Петербург»" in page.content.decode()


def test_wrong_rules_are_shown_naming_the_rule(world: World) -> None:
    bad = {"match": "all", "rules": [{"field": "age", "operator": "gte", "value": "old"}]}
    response = browser(MARKETER).post(
        reverse("admin:segments_segment_add"), form_data(rules=json.dumps(bad))
    )
    assert response.status_code == 200
    assert "rules[0].value: expected a whole number" in response.content.decode()
    assert not Segment.objects.exists()


def test_preview_endpoint_counts_samples_and_explains(
    world: World, django_assert_max_num_queries: Any
) -> None:
    http = browser(OPERATOR)
    url = reverse("admin:segments_segment_preview")
    with django_assert_max_num_queries(12):
        response = http.post(url, {"rules": SPB_WOMEN}, content_type="application/json")
    body = response.json()
    assert body["ok"] is True and body["count"] == 2
    assert [row["external_id"] for row in body["sample"]] == ["vera", "anna"]
    assert body["sample"][0]["url"] == reverse("admin:crm_client_change", args=[world.vera.pk])
    assert body["explanation"] == "gender is female AND city is «Санкт-Петербург»"

    bad = {"match": "all", "rules": [SPB_WOMEN["rules"][0], {"field": "city", "operator": "??"}]}
    response = http.post(url, {"rules": bad}, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == "rules[1].operator"
    assert not Segment.objects.exists()


def test_preview_query_count_does_not_grow_with_clients(
    world: World, django_assert_max_num_queries: Any
) -> None:
    Client.objects.bulk_create(
        Client(external_id=f"w{i}", gender="f", city="Санкт-Петербург") for i in range(60)
    )
    http = browser(MARKETER)
    with django_assert_max_num_queries(12):
        body = http.post(
            reverse("admin:segments_segment_preview"),
            {"rules": SPB_WOMEN},
            content_type="application/json",
        ).json()
    assert body["count"] == 62 and len(body["sample"]) == 10


def test_product_lookup(world: World) -> None:
    http = browser(MARKETER)
    found = http.get(reverse("admin:segments_segment_lookup"), {"q": "Lapt"}).json()
    assert found == {"results": [{"id": world.laptop.pk, "text": "Laptop (LP)"}]}


def test_refresh_action_and_history_on_the_change_page(world: World) -> None:
    segment = segment_save(segment=Segment(name="SPb women"), rules=SPB_WOMEN)
    http = browser(MARKETER)
    response = http.post(
        reverse("admin:segments_segment_changelist"),
        {"action": "refresh_selected", "_selected_action": [segment.pk]},
    )
    assert response.status_code == 302
    assert SegmentMember.objects.filter(segment=segment).count() == 2
    page = http.get(reverse("admin:segments_segment_change", args=[segment.pk])).content.decode()
    assert 'class="segment-history"' in page


def test_operator_sees_but_cannot_change_segments(world: World) -> None:
    segment = segment_save(segment=Segment(name="SPb women"), rules=SPB_WOMEN)
    http = browser(OPERATOR)
    assert http.get(reverse("admin:segments_segment_changelist")).status_code == 200
    assert http.get(reverse("admin:segments_segment_change", args=[segment.pk])).status_code == 200
    assert http.get(reverse("admin:segments_segment_add")).status_code == 403
    assert http.post(reverse("admin:segments_segment_add"), form_data()).status_code == 403


def test_upload_a_static_list(world: World) -> None:
    segment = segment_save(segment=Segment(name="From file", kind="static"))
    http = browser(MARKETER)
    url = reverse("admin:segments_segment_upload", args=[segment.pk])
    assert http.get(url).status_code == 200
    upload = SimpleUploadedFile("list.csv", b"phone\n+7 916 111-22-44\nvera@example.ru\n")
    response = http.post(url, {"file": upload, "identifier": "auto"})
    assert response.status_code == 302
    external_ids = SegmentMember.objects.filter(segment=segment).values_list(
        "client__external_id", flat=True
    )
    assert sorted(cast("Iterable[str]", external_ids)) == ["boris", "vera"]


def test_add_selected_clients_to_a_static_segment_from_the_client_list(world: World) -> None:
    segment = segment_save(segment=Segment(name="Hand-picked", kind="static"))
    http = browser(MARKETER)
    changelist = reverse("admin:crm_client_changelist")
    chosen = [world.anna.pk, world.gleb.pk]
    ask = http.post(changelist, {"action": "add_selected_to_segment", "_selected_action": chosen})
    assert ask.status_code == 200
    assert "Add clients to a segment" in ask.content.decode()

    done = http.post(
        changelist,
        {
            "action": "add_selected_to_segment",
            "_selected_action": chosen,
            "segment": segment.pk,
            "apply": "1",
        },
    )
    assert done.status_code == 302
    external_ids = SegmentMember.objects.filter(segment=segment).values_list(
        "client__external_id", flat=True
    )
    assert sorted(cast("Iterable[str]", external_ids)) == ["anna", "gleb"]

    http.post(
        changelist,
        {
            "action": "add_selected_to_segment",
            "select_across": "1",
            "_selected_action": chosen,
            "new_name": "Everyone",
            "apply": "1",
        },
    )
    everyone = Segment.objects.get(name="Everyone")
    assert everyone.kind == "static" and everyone.member_count == 4  # not the anonymized one
    segment_refresh_membership(segment=everyone)
