"""The big-table paginator estimates only where an exact count would be costly."""

from __future__ import annotations

import pytest
from django.db import connection

from crm.admin_utils import EstimatedCountPaginator
from crm.models import Client
from tests.factories import ClientFactory

pytestmark = pytest.mark.django_db


class EagerEstimate(EstimatedCountPaginator):
    """Treats 10 rows as "big" and caps filtered counts at 5."""

    exact_below = 10
    count_cap = 5


def _analyze() -> None:
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE crm_client")


def test_unfiltered_big_postgres_table_is_counted_from_statistics(
    postgres: None, django_assert_num_queries: object
) -> None:
    ClientFactory.create_batch(25)
    _analyze()
    ClientFactory.create_batch(5)  # not yet in the statistics

    with django_assert_num_queries(1) as captured:  # type: ignore[operator]
        count = EagerEstimate(Client.objects.order_by("-id"), 10).count

    assert count == 25
    assert "reltuples" in captured.captured_queries[0]["sql"]


def test_filtered_big_postgres_table_is_exact_below_the_cap_estimated_above(
    postgres: None, django_assert_num_queries: object
) -> None:
    ClientFactory.create_batch(20, city="Казань")
    ClientFactory.create_batch(3, city="Омск")
    _analyze()

    assert EagerEstimate(Client.objects.filter(city="Омск").order_by("id"), 10).count == 3
    with django_assert_num_queries(3) as captured:  # type: ignore[operator]
        estimate = EagerEstimate(Client.objects.filter(city="Казань").order_by("id"), 10).count
    assert estimate >= EagerEstimate.count_cap + 1
    assert "EXPLAIN" in captured.captured_queries[-1]["sql"]


def test_small_tables_and_other_databases_are_counted_exactly() -> None:
    ClientFactory.create_batch(12, city="Казань")
    ClientFactory.create_batch(3, city="Омск")

    assert EstimatedCountPaginator(Client.objects.filter(city="Омск").order_by("id"), 10).count == 3
    assert EstimatedCountPaginator(Client.objects.order_by("id"), 10).count == 15


def test_fast_action_checkbox_renders_exactly_what_django_renders() -> None:
    from django.contrib import admin
    from django.contrib.admin import ModelAdmin

    client = ClientFactory(last_name="О'Нил <b>")
    model_admin = admin.site._registry[Client]

    assert model_admin.action_checkbox(client) == ModelAdmin.action_checkbox(model_admin, client)
