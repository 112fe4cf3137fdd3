"""The benchmark command: registry, JSON lines, unknown names."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from crm.benchmarking import BenchmarkContext, _registry, benchmarks, percentile, register
from crm.benchmarks import spoken_phone
from crm.models import Client

KEYS = {"benchmark", "case", "metric", "value", "unit", "target", "ok"}


@pytest.mark.django_db
def test_admin_benchmark_prints_one_json_object_per_line_and_nothing_else() -> None:
    # when
    out, err = io.StringIO(), io.StringIO()
    call_command("benchmark", "admin", clients=20, json=True, repeat=2, stdout=out, stderr=err)

    # then every stdout line is a figure with exactly the agreed keys
    lines = out.getvalue().splitlines()
    figures = [json.loads(line) for line in lines]
    assert figures and all(set(f) == KEYS for f in figures)
    assert {f["benchmark"] for f in figures} == {"admin"}
    for f in figures:
        assert isinstance(f["value"], int | float)
        assert f["target"] is None or isinstance(f["target"], int | float)
        assert f["ok"] in (True, False, None)
    by_key = {(f["case"], f["metric"]): f for f in figures}
    # the database was empty: it was seeded, and the seed speed has a target
    assert by_key[("seed_demo", "rows_per_s")]["target"] > 0
    assert Client.objects.count() == 20
    for case in (
        "client_changelist",
        "client_search_phone",
        "client_filter_gender",
        "client_filter_city",
        "purchase_changelist",
        "purchase_search_phone",
        "purchase_filter_channel",
        "ledger_changelist",
        "ledger_filter_kind",
    ):
        assert by_key[(case, "p95")]["target"] == 300
        assert by_key[(case, "p95")]["unit"] == "ms"
        assert by_key[(case, "queries")]["value"] >= 1
    assert "seed_demo:" in err.getvalue()  # progress goes to stderr


@pytest.mark.django_db
def test_second_run_reuses_data_of_the_right_size() -> None:
    # given
    call_command("seed_demo", clients=20, flush=True, stdout=io.StringIO(), stderr=io.StringIO())
    first_id = Client.objects.order_by("id").values_list("id", flat=True)[0]

    # when
    out = io.StringIO()
    call_command("benchmark", "admin", clients=20, repeat=1, stdout=out, stderr=io.StringIO())

    # then the table says the data was reused, and it was not reseeded
    assert "reused_clients" in out.getvalue()
    assert "rows_per_s" not in out.getvalue()
    assert Client.objects.order_by("id").values_list("id", flat=True)[0] == first_id


def test_unknown_benchmark_lists_the_known_ones() -> None:
    with pytest.raises(CommandError, match=r"unknown benchmark 'nope'.*admin"):
        call_command("benchmark", "nope", stdout=io.StringIO())


def test_register_and_record_compute_ok_against_the_target() -> None:
    # given
    @register("test-only-benchmark", needs_demo_data=False)
    def bench(ctx: BenchmarkContext) -> None:
        ctx.record("case", "p95", 10, "ms", target=300)
        ctx.record("case", "rate", 10, "rows/s", target=300, higher_is_better=True)
        ctx.record("case", "info", 1, "x")

    ctx = BenchmarkContext(name="test-only-benchmark", clients=1, repeat=1)

    # when
    try:
        assert "test-only-benchmark" in benchmarks()
        bench(ctx)
    finally:
        _registry.pop("test-only-benchmark")

    # then
    assert [r.ok for r in ctx.results] == [True, False, None]
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile([float(n) for n in range(1, 21)], 95) == 19.0


def test_spoken_phone_is_how_people_type_it() -> None:
    assert spoken_phone("+79123456789") == "8 (912) 345-67-89"
