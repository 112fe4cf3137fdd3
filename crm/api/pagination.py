"""Pagination for big tables: a cursor over the primary key, never a COUNT(*)."""

from __future__ import annotations

from rest_framework.pagination import CursorPagination


class IdCursorPagination(CursorPagination):
    """Newest first, stable under inserts; ``?page_size=`` up to 1,000."""

    ordering = "-id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000
