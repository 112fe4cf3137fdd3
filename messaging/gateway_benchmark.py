"""``python manage.py benchmark gateways``: SMS end to end through real peers on loopback.

Two runs, each: planned Messages -> ``dispatch_due`` -> gateway -> delivery reports back ->
applied to the Messages, timed until the last report is applied.

- ``kannel``: the Kannel backend -> smsbox -> bearerbox -> fakesmsc; DLRs through our real webhook,
  served the way production serves it (:mod:`messaging.peers.web`): granian's workers running
  ``crm.wsgi:application`` in processes of their own, not threads inside the
  dispatching process, where every callback would compete with dispatch for the same
  interpreter lock.
- ``smpp``: the direct SMPP backend -> the SMSC simulator; receipts on the same session, stored
  and applied after each batch commits; late ones through the listener.

Also measured: each gateway alone (the backend's ``send_messages`` without dispatch), so a slow
figure says whether the gateway or the outbox is the bottleneck. There is no "Kannel to a
receiver that only answers 200" figure any more: it measured Kannel, not a ceiling. With callbacks
answered at once, smsbox took a third as many sendsms requests per second (2,000 SMS in 7.6 s
against 2.5 s when each callback took 10 ms). Rows created here are deleted.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.test.utils import override_settings
from django.utils import timezone

from crm.benchmarking import BenchmarkContext, BenchmarkFailed, register

if TYPE_CHECKING:
    from messaging.peers.web import WebServer

TARGET_SMS_PER_S = 500.0
SECRET = "benchmark-gateways"
PHONE_BASE = 9_500_000  # +7916 95x xx xx: a range the demo data does not use


def _hooks_server(workdir: Path) -> WebServer:
    """granian as production runs it; its workers take the Kannel hook's secret from the
    environment (the benchmark's own process gets it from ``override_settings``)."""
    from messaging.peers.web import WebConfig, web_start

    config = WebConfig(
        workdir=workdir,
        workers=int(os.environ.get("BENCHMARK_HOOK_WORKERS", "2")),
        threads=int(os.environ.get("BENCHMARK_HOOK_THREADS", "16")),
        env={"HOOKS_KANNEL_SECRET": SECRET, "HOOKS_KANNEL_ALLOWED_IPS": "127.0.0.1"},
    )
    return web_start(config)


def _clients(count: int) -> list[Any]:
    """Benchmark clients with SMS consent, created once and reused (consent history is
    append-only, so they are never deleted)."""
    from crm.models import Channel, Client, ConsentAction, ConsentPurpose, ConsentSource
    from crm.services import ConsentChange, consent_record_many

    existing = {
        c.external_id: c for c in Client.objects.filter(external_id__startswith="bench-gw-")
    }
    missing = [
        Client(
            first_name="Бенчмарк",
            phone=f"+7916{PHONE_BASE + i:07d}",
            external_id=f"bench-gw-{i:06d}",
            time_zone="Europe/Moscow",
        )
        for i in range(count)
        if f"bench-gw-{i:06d}" not in existing
    ]
    if missing:
        created = Client.objects.bulk_create(missing)
        consent_record_many(
            changes=[
                ConsentChange(
                    client_id=c.pk,
                    channel=Channel.SMS,
                    purpose=ConsentPurpose.MARKETING,
                    action=ConsentAction.GRANTED,
                    source=ConsentSource.API,
                    wording_version="benchmark",
                    occurred_at=timezone.now() - dt.timedelta(days=1),
                )
                for c in created
            ]
        )
        existing.update({c.external_id: c for c in created})
    return [existing[f"bench-gw-{i:06d}"] for i in range(count)]


def _messages(count: int, tag: str) -> list[int]:
    from crm.models import Channel
    from messaging.models import Message

    _cleanup(tag)
    now = timezone.now()
    messages = Message.objects.bulk_create(
        [
            Message(
                client=c,
                channel=Channel.SMS,
                recipient=c.phone.as_e164,
                text=f"Скидка {i % 30} % на ваш корм, код BENCH{i:05d}",
                scheduled_for=now - dt.timedelta(minutes=1),
                is_transactional=True,  # the gateways are measured, not the contact policy
                idempotency_key=f"bench-gw:{tag}:{c.pk}",
            )
            for i, c in enumerate(_clients(count))
        ]
    )
    return [m.pk for m in messages]


def _cleanup(tag: str) -> None:
    from messaging.models import GatewayEvent, Message

    messages = Message.objects.filter(idempotency_key__startswith=f"bench-gw:{tag}:")
    GatewayEvent.objects.filter(message__in=messages).delete()
    messages.delete()


def _end_to_end(ctx: BenchmarkContext, case: str, ids: list[int], timeout: float) -> None:
    from crm.models import Channel
    from messaging.models import Message, MessageStatus
    from messaging.services.dispatch import dispatch_due
    from messaging.services.events import gateway_events_sweep

    final = [MessageStatus.DELIVERED, MessageStatus.UNDELIVERED, MessageStatus.FAILED]
    started = time.monotonic()
    result = dispatch_due(channels=[Channel.SMS], chunk_size=500)
    dispatched = time.monotonic() - started
    done = 0
    while time.monotonic() - started < timeout:
        gateway_events_sweep()  # the periodic task's job
        done = Message.objects.filter(pk__in=ids, status__in=final).count()
        if done == len(ids):
            break
        time.sleep(0.2)
    elapsed = time.monotonic() - started
    ctx.note(f"{case}: {result}; {done}/{len(ids)} final in {elapsed:.1f} s")
    if done < len(ids):
        raise BenchmarkFailed(f"{case}: only {done} of {len(ids)} messages got a final report")
    wrong = Message.objects.filter(pk__in=ids).exclude(status=MessageStatus.DELIVERED).count()
    ctx.record(
        case, "sms_per_s", len(ids) / elapsed, "SMS/s", TARGET_SMS_PER_S, higher_is_better=True
    )
    ctx.record(case, "dispatch_per_s", len(ids) / dispatched, "SMS/s")
    ctx.record(case, "not_delivered", wrong, "messages", 0)


def _raw_messages(count: int) -> list[Any]:
    from messaging.backends.base import OutgoingMessage

    return [
        OutgoingMessage(
            id=10**9 + i,
            idempotency_key=f"bench-raw-{i}",
            channel="sms",
            to=f"+7916{PHONE_BASE + i:07d}",
            text=f"Скидка {i % 30} %, код RAW{i:05d}",
        )
        for i in range(count)
    ]


def _gateway_only(ctx: BenchmarkContext, case: str, backend: Any, count: int) -> None:
    messages = _raw_messages(count)
    started = time.monotonic()
    with backend:
        results = backend.send_messages(messages)
    elapsed = time.monotonic() - started
    sent = sum(1 for r in results if r.status == "sent")
    ctx.record(case, "send_per_s", sent / elapsed, "SMS/s")


@register(
    "gateways",
    help="SMS/s end to end through Kannel (fakesmsc) and the smpp backend",
    needs_demo_data=False,
)
def gateways(ctx: BenchmarkContext) -> None:
    from messaging.backends.kannel import KannelBackend
    from messaging.backends.smpp import SmppBackend, SmppListener
    from messaging.peers.kannel import KannelConfig, kannel_available, kannel_start
    from messaging.peers.process import free_port
    from messaging.peers.smsc import smsc_start

    if not kannel_available():
        raise BenchmarkFailed("Kannel is not installed: apt-get install kannel kannel-extras")
    count = int(os.environ.get("BENCHMARK_GATEWAY_MESSAGES", "2000"))
    workdir = Path(tempfile.mkdtemp(prefix="lichno-gw-bench-"))
    server = _hooks_server(workdir / "web")
    base = server.url
    try:
        with override_settings(HOOKS_KANNEL_SECRET=SECRET, HOOKS_KANNEL_ALLOWED_IPS=["127.0.0.1"]):
            # Kannel with fakesmsc, DLRs through the webhook.
            peers = kannel_start(
                KannelConfig(
                    workdir=workdir / "kannel", hooks_base=f"{base}/hooks/kannel", secret=SECRET
                )
            )
            try:
                options: dict[str, Any] = {
                    "url": peers.config.sendsms_url,
                    "dlr_url": f"{base}/hooks/kannel/dlr",
                }
                # Without reports: ids that are no Messages must not reach the webhook.
                raw = KannelBackend(channel="sms", dlr_mask=0, **options)
                _gateway_only(ctx, "kannel_gateway_only", raw, count)
                ids = _messages(count, "kannel")
                with override_settings(
                    SMS_BACKEND="messaging.backends.kannel.KannelBackend",
                    SMS_BACKEND_OPTIONS=options,
                ):
                    _end_to_end(ctx, "kannel", ids, timeout=300)
            finally:
                peers.stop()
                _cleanup("kannel")

            # The smpp backend into the simulator.
            port = free_port()
            smsc = smsc_start(port=port, workdir=workdir)
            stop = threading.Event()
            thread: threading.Thread | None = None
            try:
                options = {
                    "host": "127.0.0.1",
                    "port": port,
                    "system_id": "lichno",
                    "password": "x",
                }
                raw_smpp = SmppBackend(channel="sms", registered_delivery=0, **options)
                _gateway_only(ctx, "smpp_gateway_only", raw_smpp, count)
                ids = _messages(count, "smpp")
                # As in production, a listener stays bound for receipts after the session closed.
                listener = SmppListener(host="127.0.0.1", port=port, system_id="lichno")
                thread = threading.Thread(target=listener.run, args=(stop,), daemon=True)
                thread.start()
                with override_settings(
                    SMS_BACKEND="messaging.backends.smpp.SmppBackend", SMS_BACKEND_OPTIONS=options
                ):
                    _end_to_end(ctx, "smpp", ids, timeout=300)
            finally:
                stop.set()
                if thread is not None:
                    thread.join(timeout=10)
                smsc.stop()
                _cleanup("smpp")
    finally:
        server.stop()
