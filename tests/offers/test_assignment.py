"""Deterministic A/B and holdout assignment: stable, and the configured shares within tolerance."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from types import SimpleNamespace

from offers.assignment import VariantPicker, in_holdout, unit_hash


def _variants(*weights):
    return [SimpleNamespace(pk=i + 1, name=chr(65 + i), weight=w) for i, w in enumerate(weights)]


def test_the_same_offer_and_client_always_land_in_the_same_place():
    assert unit_hash("7:42") == unit_hash("7:42")
    assert unit_hash("7:42") != unit_hash("8:42")
    picker = VariantPicker(7, _variants(1, 1))
    again = VariantPicker(7, list(reversed(_variants(1, 1))))  # order of the rows does not matter
    assert [picker.pick(c).name for c in range(500)] == [again.pick(c).name for c in range(500)]


def test_holdout_and_weighted_variant_shares_within_tolerance():
    offer_id, n = 17, 40_000
    holdout = [
        c
        for c in range(1, n + 1)
        if in_holdout(offer_id=offer_id, client_id=c, holdout_percent=Decimal("10"))
    ]
    assert abs(len(holdout) / n - 0.10) < 0.01

    picker = VariantPicker(offer_id, _variants(3, 1))  # A: 75%, B: 25%
    counts = Counter(picker.pick(c).name for c in range(1, n + 1) if c not in set(holdout))
    total = sum(counts.values())
    assert abs(counts["A"] / total - 0.75) < 0.01
    assert abs(counts["B"] / total - 0.25) < 0.01


def test_no_holdout_and_no_variants():
    assert not in_holdout(offer_id=1, client_id=1, holdout_percent=0)
    assert all(in_holdout(offer_id=1, client_id=c, holdout_percent=100) for c in range(100))
    assert VariantPicker(1, []).pick(5) is None
