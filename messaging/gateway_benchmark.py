"""``python manage.py benchmark gateways``: SMS end to end through real peers on loopback.

Two runs, each: planned Messages -> ``dispatch_due`` -> gateway -> delivery reports back ->
applied to the Messages, timed until the last report is applied.

- ``kannel``: the Kannel backend -> smsbox -> bearerbox -> fakesmsc; DLRs through our real webhook,
  served the way production serves it: by web worker processes of their own (here two forked
  workers sharing one listening socket, sixteen threads each, each thread keeping its database
  connection, as gunicorn's threaded workers do), not by threads inside the dispatching process,
  where every callback would compete with dispatch for the same interpreter lock.
- ``smpp``: the direct SMPP backend -> the SMSC simulator; receipts on the same session, stored
  and applied after each batch commits; late ones through the listener.

Also measured: each gateway alone (the backend's ``send_messages`` without dispatch), so a slow
figure says whether the gateway or the outbox is the bottleneck, and Kannel with every DLR
callback going to a web server that does nothing but answer 200 (the same server, no Django, no
database): the most the Kannel case could reach on this machine. Rows created here are deleted.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from django.core.wsgi import get_wsgi_application
from django.db import connections
from django.test.utils import override_settings
from django.utils import timezone

from crm.benchmarking import BenchmarkContext, BenchmarkFailed, register

TARGET_SMS_PER_S = 500.0
SECRET = "benchmark-gateways"
PHONE_BASE = 9_500_000  # +7916 95x xx xx: a range the demo data does not use


class _PooledServer(WSGIServer):
    """Requests handled by a fixed pool of threads, as a production server's workers would:
    each thread keeps its database connection instead of opening one per callback."""

    request_queue_size = 256

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="hooks")

    def process_request(self, request: Any, client_address: Any) -> None:
        self.pool.submit(self._handle, request, client_address)

    def _handle(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - logged like socketserver does
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


@contextmanager
def _web_workers(processes: int, app: Any = None) -> Iterator[str]:
    """The webhooks (or ``app``) served by ``processes`` forked worker processes that share one
    listening socket (a pre-fork server such as gunicorn), each with its pool of threads.
    Settings in force when this is entered are the workers' settings. Stopped by PID."""
    from messaging.peers.process import free_port

    port = free_port()
    server = make_server(
        "127.0.0.1",
        port,
        app or get_wsgi_application(),
        server_class=_PooledServer,
        handler_class=_QuietHandler,
    )
    connections.close_all()  # a worker must not share this process's database connection
    pids: list[int] = []
    try:
        for _ in range(processes):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the worker process
                try:
                    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
                    server.serve_forever()
                finally:
                    os._exit(0)
            pids.append(pid)
        server.socket.close()  # only the workers accept
        yield f"http://127.0.0.1:{port}"
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for pid in pids:
            while os.waitpid(pid, os.WNOHANG) == (0, 0):
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    break
                time.sleep(0.05)


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


def _kannel_noop_receiver(ctx: BenchmarkContext, sendsms_url: str, count: int) -> None:
    """Kannel with every DLR (2 per message from fakesmsc) sent to a server that only counts."""
    from messaging.backends.kannel import KannelBackend

    received = multiprocessing.get_context("fork").Value("i", 0)

    def count_only(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        with received.get_lock():
            received.value += 1
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]

    with _web_workers(1, count_only) as base:
        backend = KannelBackend(channel="sms", url=sendsms_url, dlr_url=f"{base}/dlr", dlr_mask=31)
        started = time.monotonic()
        with backend:
            backend.send_messages(_raw_messages(count))
        last, seen = time.monotonic(), 0
        while received.value < 2 * count and time.monotonic() - last < 10:
            if received.value != seen:
                seen, last = received.value, time.monotonic()
            time.sleep(0.05)
        elapsed = (time.monotonic() if received.value >= 2 * count else last) - started
    ctx.note(f"kannel, DLRs to a no-op server: {received.value} callbacks in {elapsed:.1f} s")
    ctx.record("kannel_noop_receiver", "sms_per_s", count / elapsed, "SMS/s")


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
    workers = int(os.environ.get("BENCHMARK_HOOK_WORKERS", "2"))
    workdir = Path(tempfile.mkdtemp(prefix="lichno-gw-bench-"))
    # The webhook workers' threads keep their connections (CONN_MAX_AGE of the settings).
    db_settings = connections.settings["default"]
    max_age = db_settings.get("CONN_MAX_AGE", 0)
    db_settings["CONN_MAX_AGE"] = max(int(max_age or 0), 60)
    try:
        with (
            override_settings(HOOKS_KANNEL_SECRET=SECRET, HOOKS_KANNEL_ALLOWED_IPS=["127.0.0.1"]),
            _web_workers(workers) as base,
        ):
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
                _kannel_noop_receiver(ctx, peers.config.sendsms_url, count)
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
        db_settings["CONN_MAX_AGE"] = max_age
