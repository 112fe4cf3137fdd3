"""Run the SIP autodialer: dial sent call messages on the configured lines (baresip)."""

from __future__ import annotations

import signal
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from messaging.services.calls import autodial_run


def _stop(signum: int, frame: Any) -> None:
    # Once: make run's Ctrl-C brings SIGINT and then SIGTERM, and a second exit raised inside the
    # clean-up would cut it short and leave the agents running.
    for other in (signal.SIGTERM, signal.SIGINT):
        signal.signal(other, signal.SIG_IGN)
    sys.exit(128 + signum)


class Command(BaseCommand):
    help = "Dial call messages that dispatch has sent, on VOICE_BACKEND's SIP lines."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--lines", type=int, default=None, help="concurrent calls")
        parser.add_argument("--max-calls", type=int, default=None)
        parser.add_argument(
            "--once",
            action="store_true",
            help="stop when nothing is left to dial (default: keep waiting for new messages)",
        )
        parser.add_argument(
            "--idle-seconds",
            type=float,
            default=3600.0,
            help="without --once: restart the lines after this long without calls",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # SIGTERM (make run's Ctrl-C, a process manager) unwinds like Ctrl-C does, so the dialer
        # hangs up, lets running calls finish and stops its baresip agents, which run in
        # sessions of their own and would otherwise outlive it.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _stop)
        while True:
            result = autodial_run(
                max_calls=options["max_calls"],
                lines=options["lines"],
                idle_seconds=0.0 if options["once"] else options["idle_seconds"],
            )
            if result.calls:
                self.stdout.write(
                    f"{result.calls} calls in {result.seconds:.1f} s "
                    f"({result.rate_per_minute:.1f}/min): {result.outcomes}"
                )
            if options["once"] or options["max_calls"]:
                return
