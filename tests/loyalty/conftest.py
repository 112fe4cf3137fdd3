"""Small builders for loyalty tests: tiers, clients, purchases."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from crm.models import Client, Purchase
from loyalty.models import Tier

# Recent enough that accrual of pending purchases (which skips born-expired points) sees them.
NOW = timezone.now().replace(microsecond=0)


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture
def tiers(db: Any) -> dict[str, Tier]:
    """Base 1 pt / 100 RUB; Silver 3 pts at 10 000 in 365 days; Gold 5 pts at 50 000 in 180 days."""
    return {
        "base": Tier.objects.create(
            name="Base", rank=1, qualifying_spend=Decimal("0"), window_days=365, earn_rate=1
        ),
        "silver": Tier.objects.create(
            name="Silver",
            rank=2,
            qualifying_spend=Decimal("10000"),
            window_days=365,
            earn_rate=Decimal("3"),
        ),
        "gold": Tier.objects.create(
            name="Gold",
            rank=3,
            qualifying_spend=Decimal("50000"),
            window_days=180,
            earn_rate=Decimal("5"),
        ),
    }


@pytest.fixture
def make_client(db: Any) -> Callable[..., Client]:
    counter = iter(range(1, 1_000_000))

    def make(**fields: Any) -> Client:
        n = next(counter)
        fields.setdefault("last_name", f"Ivanov{n}")
        fields.setdefault("external_id", f"C{n}")
        return Client.objects.create(**fields)

    return make


@pytest.fixture
def make_purchase(db: Any) -> Callable[..., Purchase]:
    def make(
        client: Client, total: str | Decimal, *, days_ago: float = 1, **fields: Any
    ) -> Purchase:
        return Purchase.objects.create(
            client=client,
            total=Decimal(total),
            purchased_at=fields.pop("purchased_at", NOW - timedelta(days=days_ago)),
            **fields,
        )

    return make
