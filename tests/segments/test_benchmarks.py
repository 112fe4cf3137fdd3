"""The segments benchmark runs on a small demo data set and the compiled queries return exactly
the members of the hand-written reference queries."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from segments.models import Segment


@pytest.mark.django_db
def test_compiled_and_hand_written_queries_agree_on_demo_data(postgres: None) -> None:
    out = io.StringIO()
    call_command(
        "benchmark", "segments", clients=400, repeat=1, json=True, stdout=out, stderr=io.StringIO()
    )

    figures = [json.loads(line) for line in out.getvalue().splitlines()]
    same = {f["case"]: f["ok"] for f in figures if f["metric"] == "same_members"}
    assert len(same) >= 8
    assert all(same.values()), same
    members = {f["case"]: f["value"] for f in figures if f["metric"] == "members"}
    assert sum(members.values()) > 0  # the segments are not all empty on demo data
    assert any(f["case"].startswith("snapshot refresh") for f in figures)
    assert not Segment.objects.exists()  # the benchmark cleans up after itself
