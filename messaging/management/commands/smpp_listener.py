"""Keep a bound SMPP receiver between campaigns: receipts and inbound SMS become GatewayEvents."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from messaging.backends.smpp import SmppListener


class Command(BaseCommand):
    help = "Bind to the SMSC as a receiver and store delivery receipts and inbound SMS."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=None, help="default: SMPP_HOST")
        parser.add_argument("--port", type=int, default=None, help="default: SMPP_PORT")
        parser.add_argument("--system-id", default=None, help="default: SMPP_SYSTEM_ID")
        parser.add_argument("--password", default=None, help="default: SMPP_PASSWORD")
        parser.add_argument(
            "--bind", choices=["receiver", "transceiver"], default="receiver", help="bind type"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        listener = SmppListener(
            host=options["host"],
            port=options["port"],
            system_id=options["system_id"],
            password=options["password"],
            bind=options["bind"],
        )
        self.stdout.write(f"SMPP listener: {listener.session.host}:{listener.session.port}")
        self.stdout.flush()
        listener.run(stop)
        self.stdout.write(f"SMPP listener stopped after {listener.received} events")
