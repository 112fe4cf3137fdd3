"""Print the long-running gateway commands the configured backends need (``make run`` starts
them): ``autodialer`` for the SIP autodialer, ``smpp_listener`` for SMPP receipts."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils.module_loading import import_string

from messaging.backends.sip import SipBackend
from messaging.backends.smpp import SmppBackend


def gateway_processes() -> list[str]:
    needed = []
    if issubclass(import_string(settings.VOICE_BACKEND), SipBackend):
        needed.append("autodialer")
    if issubclass(import_string(settings.SMS_BACKEND), SmppBackend):
        needed.append("smpp_listener")
    return needed


class Command(BaseCommand):
    help = "Print the gateway processes (manage.py commands) the configured backends need."

    def handle(self, *args: Any, **options: Any) -> None:
        for name in gateway_processes():
            self.stdout.write(name)
