"""Deterministic A/B and holdout assignment per (offer, client).

``sha256(f"{offer_id}:{client_id}")`` gives a point in [0, 1): below the holdout share the client
is in the control group. The variant is drawn from a second, independent hash, by weight, among
the variants ordered by name, so adding a holdout does not reshuffle who sees which wording. The
same client always lands in the same place for the same offer: across runs, processes, machines.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Sequence
from decimal import Decimal
from itertools import accumulate
from typing import Any

_SCALE = float(1 << 64)


def unit_hash(key: str) -> float:
    """A stable point in [0, 1) for a key."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def in_holdout(*, offer_id: int, client_id: int, holdout_percent: Decimal | float) -> bool:
    return in_holdout_share(offer_id, client_id, float(holdout_percent) / 100)


def in_holdout_share(offer_id: int, client_id: int, share: float) -> bool:
    """``in_holdout`` with the share (0..1) worked out once, for a batch."""
    return share > 0 and unit_hash(f"{offer_id}:{client_id}") < share


class VariantPicker:
    """Weighted, deterministic choice among an offer's variants."""

    def __init__(self, offer_id: int, variants: Sequence[Any]) -> None:
        self.offer_id = offer_id
        self.variants = sorted(variants, key=lambda v: (v.name, v.pk))
        self.bounds = list(accumulate(max(int(v.weight), 0) for v in self.variants))
        self.total = self.bounds[-1] if self.bounds else 0

    def pick(self, client_id: int) -> Any | None:
        if not self.total:
            return None
        point = unit_hash(f"{self.offer_id}:{client_id}:variant") * self.total
        return self.variants[bisect_right(self.bounds, point)]
