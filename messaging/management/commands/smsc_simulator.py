"""Run the SMPP SMSC simulator (messaging.peers.smsc) in the foreground until SIGTERM/Ctrl-C.

Same options as ``python -m messaging.peers.smsc --help`` (which starts faster: no Django).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from messaging.peers import smsc


class Command(BaseCommand):
    help = "SMPP 3.4 SMSC simulator: answers submit_sm, sends receipts, fails numbers by rule."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("args", nargs="*", help="--port 2775 --fail-rule 'undeliv:*13' ...")

    def run_from_argv(self, argv: list[str]) -> None:
        # Everything after the command name goes to the simulator's own parser.
        smsc.main(argv[2:])

    def handle(self, *args: Any, **options: Any) -> None:
        smsc.main(list(args))
