"""``python manage.py benchmark import``: bulk upserts through the HTTP stack and a 100k-row file
import, against a plain COPY of the same rows (the limit). Meant for PostgreSQL.

Every run uses fresh keys (a run tag), so "created" is real creation each time; the rows stay in
the database like any integration's data.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection, transaction
from django.utils import timezone

from crm.benchmarking import BenchmarkContext, BenchmarkFailed, register

CLIENTS = 50_000
CLIENT_BATCH = 10_000
PURCHASES = 20_000
PURCHASE_BATCH = 5_000
ITEMS_PER_PURCHASE = 3
PRODUCTS = 2_000
FILE_ROWS = 100_000

CLIENTS_PER_S = 10_000.0
ITEMS_PER_S = 10_000.0
RESEND_PER_S = 20_000.0
FILE_SECONDS = 60.0
FILE_PEAK_MB = 300.0

# Mobile codes the demo data does not use, so benchmark phones never collide with it.
_PHONE_CODES = (*range(940, 950), *range(970, 977))


def _phone(n: int) -> str:
    code, rest = divmod(n, 10_000_000)
    return f"+7{_PHONE_CODES[code % len(_PHONE_CODES)]}{rest:07d}"


def _api() -> Any:
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    from crm.roles import INTEGRATION

    user, _ = get_user_model().objects.get_or_create(username="bench-integration")
    user.groups.add(Group.objects.get(name=INTEGRATION))
    token, _ = Token.objects.get_or_create(user=user)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return api


def _post_all(api: Any, url: str, bodies: list[bytes], expect: str) -> tuple[float, dict[str, int]]:
    """POST every body; seconds spent and the summed counts. Fails on any error reported."""
    totals = {"created": 0, "updated": 0, "unchanged": 0}
    started = time.perf_counter()
    for body in bodies:
        response = api.post(url, data=body, content_type="application/json")
        if response.status_code != 200:
            raise BenchmarkFailed(f"POST {url}: {response.status_code} {response.content[:300]!r}")
        data = response.json()
        if data["errors"]:
            raise BenchmarkFailed(f"POST {url}: errors {data['errors'][:3]}")
        for key in totals:
            totals[key] += data[key]
    seconds = time.perf_counter() - started
    if not totals[expect]:
        raise BenchmarkFailed(f"POST {url}: nothing {expect}: {totals}")
    return seconds, totals


def _batches(rows: list[dict[str, Any]], size: int) -> list[bytes]:
    return [json.dumps(rows[i : i + size]).encode() for i in range(0, len(rows), size)]


def _copy_seconds(purchases: list[dict[str, Any]], product_ids: dict[str, int]) -> float:
    """A plain COPY of the same purchase and item rows into tables shaped like the real ones
    (indexes and checks, no foreign keys), rolled back."""
    client_id = 1
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE bench_purchase (LIKE crm_purchase INCLUDING ALL) ON COMMIT DROP"
        )
        cursor.execute(
            "CREATE TEMP TABLE bench_item (LIKE crm_purchaseitem INCLUDING ALL) ON COMMIT DROP"
        )
        raw = cursor.cursor
        started = time.perf_counter()
        with raw.copy(
            "COPY bench_purchase (id, external_id, client_id, purchased_at, channel, store, "
            "total, created_at, updated_at) FROM STDIN"
        ) as copy:
            for number, p in enumerate(purchases, start=1):
                copy.write_row(
                    (
                        number,
                        p["external_id"],
                        client_id,
                        p["purchased_at"],
                        "store",
                        "",
                        Decimal("1.00"),
                        now,
                        now,
                    )
                )
        with raw.copy(
            "COPY bench_item (purchase_id, product_id, quantity, unit_price, discount, "
            "client_id, purchased_at) FROM STDIN"
        ) as copy:
            for number, p in enumerate(purchases, start=1):
                for item in p["items"]:
                    copy.write_row(
                        (
                            number,
                            product_ids[item["sku"]],
                            item["quantity"],
                            item["unit_price"],
                            "0",
                            client_id,
                            p["purchased_at"],
                        )
                    )
        seconds = time.perf_counter() - started
        transaction.set_rollback(True)
    return seconds


_CHILD = """
import json, resource, sys, time
import django
django.setup()
from crm import importing
started = time.perf_counter()
job = importing.import_job_run(job_id=int(sys.argv[1]))
seconds = time.perf_counter() - started
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "status": job.status,
                  "message": job.message, "created": job.created, "updated": job.updated,
                  "unchanged": job.unchanged, "errors": job.error_count}))
"""


def _run_job_in_subprocess(job_id: int) -> dict[str, Any]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "crm.settings"}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(job_id)],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise BenchmarkFailed(f"file import failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@register(
    "import",
    help="Bulk API upserts (clients, purchases) and a 100k-row file import vs a plain COPY",
    needs_demo_data=False,
)
def import_benchmark(ctx: BenchmarkContext) -> None:
    if connection.vendor != "postgresql":
        raise BenchmarkFailed("the import benchmark needs PostgreSQL (set DATABASE_URL)")
    from crm.importing import import_job_create
    from crm.models import ImportKind

    api = _api()
    tag = f"bi{int(time.time())}"
    from crm.models import Client

    base = Client.objects.filter(external_id__startswith="bi").count()  # earlier runs' clients
    ctx.note(f"run tag {tag}")

    products = [
        {
            "sku": f"{tag}-S{i}",
            "name": f"Товар {i}",
            "category": f"{tag}-cat{i % 20}",
            "brand": f"{tag} brand {i % 50}",
            "price": f"{100 + i % 900}.00",
        }
        for i in range(PRODUCTS)
    ]
    _post_all(api, "/api/v1/products/bulk/", _batches(products, PRODUCTS), "created")

    # Clients.
    clients = [
        {
            "external_id": f"{tag}-C{i}",
            "last_name": "Иванов",
            "first_name": f"Иван{i % 100}",
            "phone": _phone(base + i),
            "email": f"{tag}.{i}@example.ru",
            "city": "Казань",
            "gender": "m",
            "birth_date": f"19{50 + i % 50}-0{1 + i % 9}-1{i % 10}",
        }
        for i in range(CLIENTS)
    ]
    bodies = _batches(clients, CLIENT_BATCH)
    ctx.note(f"{CLIENTS:,} clients in batches of {CLIENT_BATCH:,}")
    seconds, _ = _post_all(api, "/api/v1/clients/bulk/", bodies, "created")
    ctx.record(
        "clients_upsert",
        "rate",
        CLIENTS / seconds,
        "clients/s",
        target=CLIENTS_PER_S,
        higher_is_better=True,
    )
    seconds, totals = _post_all(api, "/api/v1/clients/bulk/", bodies, "unchanged")
    ctx.record(
        "clients_resend",
        "rate",
        CLIENTS / seconds,
        "clients/s",
        target=RESEND_PER_S,
        higher_is_better=True,
    )

    # Purchases with three items each.
    start = timezone.now().replace(microsecond=0)
    purchases = [
        {
            "external_id": f"{tag}-P{i}",
            "client_external_id": f"{tag}-C{i % CLIENTS}",
            "purchased_at": (start.replace(day=1, hour=i % 24)).isoformat(),
            "store": "Казань-1",
            "items": [
                {
                    "sku": f"{tag}-S{(i * 7 + k) % PRODUCTS}",
                    "quantity": str(1 + k),
                    "unit_price": f"{99 + k}.90",
                }
                for k in range(ITEMS_PER_PURCHASE)
            ],
        }
        for i in range(PURCHASES)
    ]
    items = PURCHASES * ITEMS_PER_PURCHASE
    bodies = _batches(purchases, PURCHASE_BATCH)
    ctx.note(f"{PURCHASES:,} purchases ({items:,} items) in batches of {PURCHASE_BATCH:,}")
    seconds, _ = _post_all(api, "/api/v1/purchases/bulk/", bodies, "created")
    api_rate = items / seconds
    ctx.record(
        "purchases_upsert", "rate", api_rate, "items/s", target=ITEMS_PER_S, higher_is_better=True
    )
    seconds, _ = _post_all(api, "/api/v1/purchases/bulk/", bodies, "unchanged")
    ctx.record(
        "purchases_resend",
        "rate",
        items / seconds,
        "items/s",
        target=RESEND_PER_S,
        higher_is_better=True,
    )

    from crm.models import Product

    product_ids = dict(Product.objects.filter(sku__startswith=f"{tag}-").values_list("sku", "id"))
    copy_rate = items / _copy_seconds(purchases, product_ids)
    ctx.record("copy_baseline", "rate", copy_rate, "items/s")
    ctx.record("purchases_upsert", "share_of_copy", 100 * api_rate / copy_rate, "%")

    # A 100k-row purchase file (one row per item), imported by the background job's code in a
    # separate process so that its peak memory is its own.
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "purchases.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(
                [
                    "external_id",
                    "client_phone",
                    "purchased_at",
                    "store",
                    "sku",
                    "quantity",
                    "unit_price",
                ]
            )
            for row in range(FILE_ROWS):
                i = row // ITEMS_PER_PURCHASE
                writer.writerow(
                    [
                        f"{tag}-F{i}",
                        "8" + _phone(base + i % CLIENTS)[2:],
                        start.isoformat(),
                        "Казань-2",
                        f"{tag}-S{(i + row) % PRODUCTS}",
                        "1",
                        "250.00",
                    ]
                )
        from django.core.files.uploadedfile import SimpleUploadedFile

        upload = SimpleUploadedFile("purchases.csv", path.read_bytes(), "text/csv")
        user = get_user_model().objects.get(username="bench-integration")
        for dry_run in (True, False):
            upload.seek(0)
            job = import_job_create(
                kind=ImportKind.PURCHASES, upload=upload, user=user, dry_run=dry_run
            )
            ctx.note(f"file import of {FILE_ROWS:,} rows ({'dry run' if dry_run else 'import'})")
            figures = _run_job_in_subprocess(job.pk)
            if figures["status"] != "done" or figures["errors"]:
                raise BenchmarkFailed(f"file import: {figures}")
            case = "file_dry_run" if dry_run else "file_import"
            ctx.record(
                case, "seconds", figures["seconds"], "s", target=None if dry_run else FILE_SECONDS
            )
            ctx.record(case, "rows_per_s", FILE_ROWS / figures["seconds"], "rows/s")
            ctx.record(case, "peak_rss", figures["peak_mb"], "MB", target=FILE_PEAK_MB)
            ctx.record(
                "file_import" if not dry_run else "file_dry_run",
                "share_of_copy",
                100 * (FILE_ROWS / figures["seconds"]) / copy_rate,
                "%",
            )
            job.file.delete(save=False)
