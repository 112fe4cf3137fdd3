"""Admin helpers for big tables."""

from __future__ import annotations

from functools import cached_property

from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet


class EstimatedCountPaginator(Paginator):
    """Counts an unfiltered PostgreSQL table from its statistics instead of COUNT(*).

    At millions of rows an exact count costs more than the page itself. Filtered querysets are
    counted exactly (they are usually small); so are small tables, whose estimate may be stale.
    """

    exact_below = 100_000

    @cached_property
    def count(self) -> int:  # type: ignore[override]
        qs = self.object_list
        query = getattr(qs, "query", None)
        if (
            isinstance(qs, QuerySet)
            and query is not None
            and not query.where
            and not query.distinct
        ):
            connection = connections[qs.db]
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                        [qs.model._meta.db_table],
                    )
                    row = cursor.fetchone()
                estimate = int(row[0]) if row else -1
                if estimate >= self.exact_below:
                    return estimate
        return super().count
