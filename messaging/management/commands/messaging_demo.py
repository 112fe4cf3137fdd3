"""``python manage.py messaging_demo``: demo contact policy, campaigns and trigger scenarios."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from messaging.demo import DemoOffersMissing, messaging_demo_setup


class Command(BaseCommand):
    help = (
        "Create the demo contact policy, three campaigns and a trigger scenario of each kind "
        "(idempotent). Run after offers_demo."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            demo = messaging_demo_setup()
        except DemoOffersMissing as exc:
            raise CommandError(str(exc)) from exc
        active = "active" if demo.policy.is_active else "inactive"
        self.stdout.write(f"Contact policy: {demo.policy.name} ({active})")
        for campaign in (demo.offer_campaign, demo.plain_campaign, demo.autodial_campaign):
            self.stdout.write(f"Campaign {campaign.pk}: {campaign.name}")
        for scenario in demo.scenarios:
            state = "on" if scenario.is_active else "off"
            self.stdout.write(f"Scenario {scenario.pk}: {scenario.name} ({state})")
