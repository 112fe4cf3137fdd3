"""``python manage.py offers_demo``: demo offers, cross-sell rules and a promo pool."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from offers.demo import offers_demo_setup


class Command(BaseCommand):
    help = "Create (or update) the demo offers over the demo catalog. Run after seed_demo."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--codes", type=int, default=2000, help="Promo codes in a new pool.")

    def handle(self, *args: Any, **options: Any) -> None:
        demo = offers_demo_setup(codes=options["codes"])
        for offer in (demo.replenish, demo.cross_sell, demo.own_brand):
            self.stdout.write(f"{offer.pk}: {offer.name} ({offer.get_status_display()})")
