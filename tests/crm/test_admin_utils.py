"""The big-table paginator estimates only where an exact count would be costly."""

from __future__ import annotations

import pytest
from django.db import connection

from crm.admin_utils import EstimatedCountPaginator
from crm.models import Client
from tests.factories import ClientFactory

pytestmark = pytest.mark.django_db


class EagerEstimate(EstimatedCountPaginator):
    exact_below = 10


def test_unfiltered_postgres_table_is_counted_from_statistics(
    postgres: None, django_assert_num_queries: object
) -> None:
    ClientFactory.create_batch(25)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE crm_client")
    ClientFactory.create_batch(5)  # not yet in the statistics

    with django_assert_num_queries(1) as captured:  # type: ignore[operator]
        count = EagerEstimate(Client.objects.order_by("-id"), 10).count

    assert count == 25
    assert "reltuples" in captured.captured_queries[0]["sql"]


def test_filtered_and_small_tables_are_counted_exactly() -> None:
    ClientFactory.create_batch(12, city="Казань")
    ClientFactory.create_batch(3, city="Омск")

    assert EagerEstimate(Client.objects.filter(city="Омск").order_by("id"), 10).count == 3
    assert EstimatedCountPaginator(Client.objects.order_by("id"), 10).count == 15
