"""Deterministic demo data: ``seed()`` writes it, ``python manage.py seed_demo`` runs it."""

from crm.demo.seeding import (
    DEMO_USERS,
    DemoDataExists,
    DemoUser,
    SeedStats,
    ensure_demo_users,
    flush_domain_data,
    seed,
)

__all__ = [
    "DEMO_USERS",
    "DemoDataExists",
    "DemoUser",
    "SeedStats",
    "ensure_demo_users",
    "flush_domain_data",
    "seed",
]
