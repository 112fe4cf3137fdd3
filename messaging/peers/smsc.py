"""An SMPP 3.4 SMSC simulator on ``smpp34``'s server API, for development, tests and benchmarks.

It binds any ESME (transmitter, receiver or transceiver), answers every ``submit_sm`` with a
fresh message id, and sends a delivery receipt (``deliver_sm`` with ``esm_class`` 0x04, the
``id:... stat:...`` text and the ``receipted_message_id`` / ``message_state`` TLVs) to the session
that submitted it, or, when that one is gone, to another receiver of the same ``system_id`` (or
keeps it until one binds): receipts are not lost between campaigns.

Failure rules, by destination pattern (shell-style, ``*13`` = numbers ending in 13)::

    undeliv:*13     accept, then receipt stat:UNDELIV
    expire:*77      accept, then receipt stat:EXPIRED
    rejectd:*66     accept, then receipt stat:REJECTD
    reject:*99      refuse the submit_sm with ESME_RINVDSTADR (0x0B, permanent)
    throttle:*55    refuse the first submit_sm to each such number with ESME_RTHROTTLED (0x58)

Ids are decimal by default (Kannel: ``msg-id-type = 0x00``) or hex (``0x03``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import itertools
import logging
import signal
import sys
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import smpp34

from messaging.peers.process import PeerProcess, start_process, wait_for_port

logger = logging.getLogger(__name__)

ESM_CLASS_RECEIPT = 0x04
# Re-exported by smpp34 from its extension at import time (invisible to type checkers).
ESME_RINVDSTADR: int = getattr(smpp34, "ESME_RINVDSTADR", 0x0B)
ESME_RTHROTTLED: int = getattr(smpp34, "ESME_RTHROTTLED", 0x58)
TLV_RECEIPTED_MESSAGE_ID: int = getattr(smpp34, "TLV_RECEIPTED_MESSAGE_ID", 0x001E)
TLV_MESSAGE_STATE: int = getattr(smpp34, "TLV_MESSAGE_STATE", 0x0427)
MESSAGE_STATE = {"DELIVRD": 2, "EXPIRED": 3, "UNDELIV": 5, "REJECTD": 8}
RECEIPT_WORKERS = 32


@dataclass(frozen=True)
class FailRule:
    action: str  # undeliv | expire | rejectd | reject | throttle
    pattern: str

    def matches(self, number: str) -> bool:
        return fnmatch.fnmatchcase(number, self.pattern)


def parse_fail_rules(spec: str) -> list[FailRule]:
    rules = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        action, _, pattern = item.partition(":")
        if action not in {"undeliv", "expire", "rejectd", "reject", "throttle"} or not pattern:
            raise ValueError(f"bad fail rule {item!r}")
        rules.append(FailRule(action, pattern))
    return rules


@dataclass
class Receipt:
    session_id: str
    system_id: str
    message_id: str
    source: str
    destination: str
    stat: str
    submitted: datetime
    due: float = 0.0  # loop time before which it is not sent


@dataclass
class Stats:
    submits: int = 0
    rejected: int = 0
    throttled: int = 0
    receipts: int = 0
    mo: int = 0


@dataclass
class SmscSimulator:
    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str = "lichno-smsc"
    rules: list[FailRule] = field(default_factory=list)
    hex_ids: bool = False
    # A receipt never overtakes its submit_sm_resp on the wire (Kannel drops a receipt for an id
    # it has not stored yet), and real SMSCs take at least this long anyway.
    receipt_delay: float = 0.05
    mo: list[tuple[str, str, str]] = field(default_factory=list)  # (from, to, text), sent once
    # Where each accepted submit_sm is written as "id destination" (the truth tests check
    # correlation against); None: not kept.
    journal: str | None = None
    stats: Stats = field(default_factory=Stats)

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._sessions: dict[str, smpp34.Esme] = {}
        self._pending: dict[str, deque[Receipt]] = defaultdict(deque)
        self._throttled: set[str] = set()
        self._receipts: asyncio.Queue[Receipt] | None = None
        self._stopping: asyncio.Event | None = None
        self._server: smpp34.Server | None = None
        self._journal: TextIO | None = None

    # Decisions ---------------------------------------------------------------------------

    def _rule(self, number: str) -> str | None:
        return next((r.action for r in self.rules if r.matches(number)), None)

    def _next_id(self) -> str:
        value = next(self._ids)
        return f"{value:x}" if self.hex_ids else str(value)

    def _on_submit(self, event: smpp34.SubmitSmEvent) -> None:
        self.stats.submits += 1
        destination = event.destination_addr
        action = self._rule(destination)
        if action == "reject":
            self.stats.rejected += 1
            event.reject(ESME_RINVDSTADR)
            return
        if action == "throttle" and destination not in self._throttled:
            self._throttled.add(destination)
            self.stats.throttled += 1
            event.reject(ESME_RTHROTTLED)
            return
        message_id = self._next_id()
        event.accept(message_id)
        if self._journal is not None:
            self._journal.write(f"{message_id} {destination}\n")
        if event.registered_delivery & 0x03:
            stat = {"undeliv": "UNDELIV", "expire": "EXPIRED", "rejectd": "REJECTD"}.get(
                action or "", "DELIVRD"
            )
            # Bit 1 alone (0x02) asks for failure receipts only.
            if event.registered_delivery & 0x01 or stat != "DELIVRD":
                esme = self._sessions.get(event.session_id)
                assert self._receipts is not None
                self._receipts.put_nowait(
                    Receipt(
                        event.session_id,
                        esme.system_id if esme else "",
                        message_id,
                        event.source_addr,
                        destination,
                        stat,
                        datetime.now(UTC),
                        asyncio.get_running_loop().time() + self.receipt_delay,
                    )
                )

    # Receipts ----------------------------------------------------------------------------

    def _receiver_for(self, receipt: Receipt) -> smpp34.Esme | None:
        esme = self._sessions.get(receipt.session_id)
        if esme is not None and esme.can_receive:
            return esme
        return next(
            (
                s
                for s in self._sessions.values()
                if s.system_id == receipt.system_id and s.can_receive
            ),
            None,
        )

    async def _deliver_receipt(self, esme: smpp34.Esme, receipt: Receipt) -> bool:
        done = datetime.now(UTC)
        text = (
            f"id:{receipt.message_id} sub:001 dlvrd:{'001' if receipt.stat == 'DELIVRD' else '000'}"
            f" submit date:{receipt.submitted:%y%m%d%H%M} done date:{done:%y%m%d%H%M}"
            f" stat:{receipt.stat} err:{'000' if receipt.stat == 'DELIVRD' else '001'} text:"
        )
        try:
            response = await esme.deliver_sm(
                receipt.source,
                text.encode("ascii"),
                source_addr=receipt.destination,
                esm_class=ESM_CLASS_RECEIPT,
                tlvs=[
                    smpp34.Tlv(TLV_RECEIPTED_MESSAGE_ID, receipt.message_id.encode() + b"\0"),
                    smpp34.Tlv(TLV_MESSAGE_STATE, bytes([MESSAGE_STATE[receipt.stat]])),
                ],
            )
        except Exception as exc:  # noqa: BLE001 - the session went away: keep the receipt
            logger.info("receipt %s not delivered: %s", receipt.message_id, exc)
            return False
        if not response.is_success:
            return False
        self.stats.receipts += 1
        return True

    async def _receipt_worker(self) -> None:
        assert self._receipts is not None
        while True:
            receipt = await self._receipts.get()
            wait = receipt.due - asyncio.get_running_loop().time()
            if wait > 0:
                await asyncio.sleep(wait)
            esme = self._receiver_for(receipt)
            if esme is None or not await self._deliver_receipt(esme, receipt):
                self._pending[receipt.system_id].append(receipt)

    def _flush_pending(self, system_id: str) -> None:
        pending = self._pending.pop(system_id, None)
        assert self._receipts is not None
        while pending:
            self._receipts.put_nowait(pending.popleft())

    async def _send_mo(self, esme: smpp34.Esme) -> None:
        from messaging.backends.smsparts import (
            DATA_CODING_GSM7,
            DATA_CODING_UCS2,
            is_gsm7,
            sms_split,
        )

        while self.mo:
            sender, recipient, text = self.mo.pop(0)
            coding = DATA_CODING_GSM7 if is_gsm7(text) else DATA_CODING_UCS2
            payload = sms_split(text).parts[0] if len(text) <= 70 else text.encode("utf-16-be")
            await esme.deliver_sm(recipient, payload, source_addr=sender, data_coding=coding)
            self.stats.mo += 1

    # Loop --------------------------------------------------------------------------------

    async def serve(self, *, ready: asyncio.Event | None = None) -> Stats:
        self._receipts = asyncio.Queue()
        self._stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            # Outside the main thread there is no signal handling: stop() is the way out.
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, self._stopping.set)
        if self.journal:
            self._journal = open(self.journal, "a", encoding="ascii", buffering=1)  # noqa: SIM115
        self._server = smpp34.Server(self.host, self.port, system_id=self.system_id)
        await self._server.start()
        logger.info("SMSC simulator on %s:%s", self.host, self.port)
        if ready is not None:
            ready.set()
        workers = [asyncio.create_task(self._receipt_worker()) for _ in range(RECEIPT_WORKERS)]
        stop = asyncio.create_task(self._stopping.wait())
        try:
            while True:
                nxt = asyncio.ensure_future(self._server.next())
                done, _ = await asyncio.wait({nxt, stop}, return_when=asyncio.FIRST_COMPLETED)
                if stop in done:
                    nxt.cancel()
                    break
                item = nxt.result()
                if isinstance(item, smpp34.SubmitSmEvent):
                    self._on_submit(item)
                elif isinstance(item, smpp34.Esme):
                    self._sessions[item.session_id] = item
                    if item.can_receive:
                        self._flush_pending(item.system_id)
                        if self.mo:
                            asyncio.create_task(self._send_mo(item))
                elif isinstance(item, smpp34.Unbound):
                    self._sessions.pop(item.session_id, None)
        finally:
            for worker in workers:
                worker.cancel()
            for esme in list(self._sessions.values()):
                with contextlib.suppress(Exception):  # closing anyway
                    await asyncio.wait_for(esme.unbind(), 1.0)
            await self._server.stop()
            if self._journal is not None:
                self._journal.close()
        return self.stats

    def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()


def main(argv: list[str] | None = None) -> None:
    """``python -m messaging.peers.smsc --port 2775 --fail-rule 'undeliv:*13'`` (no Django)."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2775)
    parser.add_argument("--fail-rule", default="", help="e.g. 'undeliv:*13,reject:*99'")
    parser.add_argument("--hex-ids", action="store_true", help="ids in hex (Kannel 0x03)")
    parser.add_argument("--receipt-delay", type=float, default=0.05, help="seconds")
    parser.add_argument("--journal", default=None, help="file of 'id destination' lines")
    parser.add_argument(
        "--mo", action="append", default=[], metavar="FROM:TO:TEXT", help="inbound SMS, once"
    )
    args = parser.parse_args(argv)
    if args.mo:  # the text encoder lives with the backends, which need Django's app registry
        import os

        import django

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings")
        django.setup()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s smsc %(message)s")
    simulator = SmscSimulator(
        host=args.host,
        port=args.port,
        rules=parse_fail_rules(args.fail_rule),
        hex_ids=args.hex_ids,
        receipt_delay=args.receipt_delay,
        journal=args.journal,
        mo=[tuple(item.split(":", 2)) for item in args.mo],
    )
    stats = asyncio.run(simulator.serve())
    print(  # noqa: T201 - a command-line tool's summary
        f"submit_sm {stats.submits}, rejected {stats.rejected}, throttled {stats.throttled}, "
        f"receipts {stats.receipts}, MO {stats.mo}",
        flush=True,
    )


if __name__ == "__main__":
    main()


def smsc_start(
    *,
    port: int,
    workdir: Path,
    host: str = "127.0.0.1",
    fail_rule: str = "",
    hex_ids: bool = False,
    journal: Path | None = None,
    mo: Sequence[str] = (),
) -> PeerProcess:
    """The simulator as its own process (``python -m messaging.peers.smsc``), port open."""
    args = [sys.executable, "-m", "messaging.peers.smsc", "--host", host, "--port", str(port)]
    if fail_rule:
        args += ["--fail-rule", fail_rule]
    if hex_ids:
        args.append("--hex-ids")
    if journal is not None:
        args += ["--journal", str(journal)]
    for item in mo:
        args += ["--mo", item]
    root = Path(__file__).resolve().parents[2]
    process = start_process("smsc", args, log_dir=workdir, env={"PYTHONPATH": str(root)})
    try:
        wait_for_port(host, port, timeout=15, process=process)
    except BaseException:
        process.stop()
        raise
    return process
