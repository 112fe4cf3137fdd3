"""Start the gateways on loopback for development (``make gateways``): the SMPP simulator, Kannel
(bearerbox + smsbox, bound to the simulator over SMPP, or to fakesmsc) and, when SIPp is
installed, a demo telephone network for the SIP autodialer (the called party acts by the number's
last digit: 1 presses 1, 2 presses 2, 3 is busy, 4 never answers, others listen). Prints the
settings that point Lichno at them; Ctrl-C stops everything by PID."""

from __future__ import annotations

import json
import secrets
import signal
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from messaging.peers.kannel import KannelConfig, kannel_available, kannel_start
from messaging.peers.process import port_open
from messaging.peers.sip import SippPeer, sipp_available
from messaging.peers.smsc import smsc_start


class Command(BaseCommand):
    help = "Start Kannel and the SMPP simulator on loopback; print the settings to use them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--smpp-port", type=int, default=settings.SMPP_PORT)
        parser.add_argument(
            "--sendsms-port",
            type=int,
            default=urlsplit(settings.KANNEL_SENDSMS_URL).port or 13013,
        )
        parser.add_argument(
            "--fail-rule",
            default="undeliv:*13,reject:*99",
            help="numbers the simulator fails (see messaging.peers.smsc)",
        )
        parser.add_argument(
            "--fakesmsc", action="store_true", help="Kannel to fakesmsc instead of the simulator"
        )
        parser.add_argument("--workdir", default=str(Path(settings.VAR_DIR) / "gateways"))
        parser.add_argument(
            "--sip-port",
            type=int,
            default=5070,
            help="UDP port of the demo telephone network (SIPp); 0 leaves it out",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not kannel_available():
            raise CommandError("Kannel is missing: apt-get install kannel kannel-extras")
        host = "127.0.0.1"
        for port in (options["smpp_port"], options["sendsms_port"]):
            if port_open(host, port):
                raise CommandError(f"{host}:{port} is taken (gateways already running?)")
        workdir = Path(options["workdir"])
        secret = settings.HOOKS_KANNEL_SECRET or secrets.token_urlsafe(24)
        hooks_base = settings.KANNEL_DLR_URL.rsplit("/", 1)[0]  # .../hooks/kannel
        smsc = smsc_start(
            port=options["smpp_port"],
            workdir=workdir,
            fail_rule=options["fail_rule"],
            journal=workdir / "smsc.journal",
        )
        peers = None
        network: SippPeer | None = None
        try:
            if options["sip_port"] and sipp_available():
                network = SippPeer("by_number", port=options["sip_port"], ring_ms=1500).start()
            config = KannelConfig(
                workdir=workdir / "kannel",
                hooks_base=hooks_base,
                secret=secret,
                username=settings.KANNEL_USERNAME,
                password=settings.KANNEL_PASSWORD,
                sendsms_port=options["sendsms_port"],
                smpp_port=0 if options["fakesmsc"] else options["smpp_port"],
                smpp_system_id="kannel",
            )
            peers = kannel_start(config)
            self._print(config, options, secret, network)
            stop = threading.Event()
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stop.set())
            while not stop.wait(1.0):
                dead = [p.name for p in [smsc, *peers.processes] if p.popen.poll() is not None]
                if network is not None and network.process and network.process.poll() is not None:
                    dead.append("sipp")
                if dead:
                    raise CommandError(f"stopped unexpectedly: {', '.join(dead)} (see {workdir})")
        finally:
            self.stdout.write("Stopping the gateways...")
            if peers is not None:
                peers.stop()
            if network is not None:
                network.stop()
            smsc.stop()

    def _print(
        self,
        config: KannelConfig,
        options: dict[str, Any],
        secret: str,
        network: SippPeer | None,
    ) -> None:
        kannel = {"rate_limit": 500}
        smpp = {"rate_limit": 500, "port": options["smpp_port"]}
        via = "fakesmsc" if options["fakesmsc"] else f"the simulator on :{options['smpp_port']}"
        lines = [
            f"SMPP simulator on {config.host}:{options['smpp_port']} "
            f"(fails: {options['fail_rule'] or 'none'})",
            f"Kannel sendsms on {config.sendsms_url}, SMSC: {via}",
            f"Kannel calls back {config.dlr_url} and {config.hooks_base}/mo",
            f"Logs in {config.workdir.parent}",
            "",
            "Put one of these in .env and restart `make run`:",
            "  # through Kannel",
            "  SMS_BACKEND=messaging.backends.kannel.KannelBackend",
            f"  SMS_BACKEND_OPTIONS={json.dumps(kannel)}",
            f"  KANNEL_SENDSMS_URL={config.sendsms_url}",
            "  # or straight to the SMSC (make run then starts smpp_listener for receipts)",
            "  SMS_BACKEND=messaging.backends.smpp.SmppBackend",
            f"  SMS_BACKEND_OPTIONS={json.dumps(smpp)}",
        ]
        if not settings.HOOKS_KANNEL_SECRET:
            lines.append(f"  HOOKS_KANNEL_SECRET={secret}   # the webhooks refuse calls without it")
        if network is not None:
            voice = {"uri_template": network.uri_template, "lines": 2}
            lines += [
                "  # autodial calls into the demo network on "
                f"{config.host}:{network.port} (make run starts the autodialer);",
                "  # the number's last digit: 1 presses 1, 2 presses 2, 3 busy, 4 no answer",
                "  VOICE_BACKEND=messaging.backends.sip.SipBackend",
                f"  VOICE_BACKEND_OPTIONS={json.dumps(voice)}",
            ]
        else:
            lines.append("  # (no SIPp: apt-get install sip-tester for the demo telephone network)")
        lines += ["", "Ctrl-C stops them."]
        self.stdout.write("\n".join(lines))
        self.stdout.flush()
