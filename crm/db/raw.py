"""Small helpers for hand-written, set-based SQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from django.db import connection

T = TypeVar("T")


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most ``size`` items (statement and parameter limits)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def db_datetime(value: dt.datetime) -> Any:
    """A datetime as the driver takes it in raw SQL (PostgreSQL: as is; SQLite: UTC text)."""
    return connection.ops.adapt_datetimefield_value(value)
