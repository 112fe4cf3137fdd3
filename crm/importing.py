"""File import (CSV, XLSX) through the bulk services of ``crm.bulk``: the same validation and
matching as the REST API, in chunks, with bounded memory.

A file's columns are named like the API's fields (case and surrounding spaces do not matter,
unknown columns are ignored, an empty cell leaves the stored value as it is). Purchases come one
row per item; consecutive rows with the same ``external_id`` are one purchase, whose header
(client, time, channel, store) is read from its first row.

An import job runs twice: a dry run (every chunk is rolled back) that counts what would be
created, updated or left unchanged and lists row errors, then, when a person confirms it, the
import itself. Either runs in the request for small files and in a Celery task for big ones
(``crm.tasks.import_job_run_task``), updating the job's progress after every chunk.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import OperationalError, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from crm import bulk
from crm.models import ClientSource, ConsentSource, ImportJob, ImportKind, ImportStatus

MAX_STORED_ERRORS = 500

COLUMNS: dict[str, list[str]] = {
    ImportKind.CLIENTS: bulk.CLIENT_FILE_COLUMNS,
    ImportKind.PRODUCTS: [
        "sku",
        "name",
        "category",
        "category_name",
        "brand",
        "price",
        "cost",
        "in_stock",
        "active",
    ],
    ImportKind.PURCHASES: [
        "external_id",
        "client_external_id",
        "client_phone",
        "purchased_at",
        "channel",
        "store",
        "total",
        "sku",
        "quantity",
        "unit_price",
        "discount",
    ],
    ImportKind.CONSENTS: [
        "client_external_id",
        "client_phone",
        "channel",
        "purpose",
        "action",
        "source",
        "wording_version",
        "occurred_at",
        "evidence",
    ],
}
REQUIRED_COLUMNS: dict[str, set[str]] = {
    ImportKind.CLIENTS: {"external_id"},
    ImportKind.PRODUCTS: {"sku"},
    ImportKind.PURCHASES: {"external_id", "purchased_at"},
    ImportKind.CONSENTS: {"channel", "action", "wording_version", "occurred_at"},
}
_ITEM_COLUMNS = ("sku", "quantity", "unit_price", "discount")
_ITEM_FIELD = re.compile(r"items\[(\d+)\]\.(\w+)")
FORMATS = ("csv", "xlsx")


class ImportFileError(Exception):
    """The file cannot be read as a whole (format, header); ``str()`` is for a person."""


# Reading ---------------------------------------------------------------------------------------


def file_format(name: str) -> str:
    suffix = Path(name).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise ImportFileError(_("Upload a .csv or .xlsx file."))
    return suffix


def _cell(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        value = value.strip()
    return value


def _header(names: list[Any], kind: str) -> list[str | None]:
    known = set(COLUMNS[kind])
    header = [str(n).strip().lower() if n is not None else "" for n in names]
    missing = REQUIRED_COLUMNS[kind] - set(header)
    references_client = kind in (ImportKind.PURCHASES, ImportKind.CONSENTS)
    if references_client and "client_external_id" not in header and "client_phone" not in header:
        missing.add("client_external_id / client_phone")
    if missing:
        raise ImportFileError(
            _("The file lacks the column(s): %(cols)s. Expected columns: %(all)s.")
            % {"cols": ", ".join(sorted(missing)), "all": ", ".join(COLUMNS[kind])}
        )
    return [name if name in known else None for name in header]


def read_rows(handle: IO[bytes], fmt: str, kind: str) -> Iterator[dict[str, Any]]:
    """The file's data rows as dicts of known, non-empty columns; streamed, never all loaded."""
    if fmt == "csv":
        text = io.TextIOWrapper(handle, encoding="utf-8-sig", newline="")
        sample = text.read(64 * 1024)
        try:
            dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        text.seek(0)
        reader = csv.reader(text, dialect)
        rows: Iterator[list[Any]] = reader
    else:
        from openpyxl import load_workbook

        try:
            workbook = load_workbook(handle, read_only=True, data_only=True)
        except Exception as error:  # noqa: BLE001 - any unreadable workbook
            raise ImportFileError(_("The file is not a readable XLSX workbook.")) from error
        sheet = workbook.worksheets[0]
        rows = (list(row) for row in sheet.iter_rows(values_only=True))
    try:
        first = next(rows)
    except StopIteration:
        raise ImportFileError(_("The file is empty.")) from None
    except (csv.Error, UnicodeDecodeError) as error:
        raise ImportFileError(_("The file is not UTF-8 CSV: %(e)s") % {"e": error}) from None
    header = _header(first, kind)
    try:
        for raw in rows:
            row = {}
            for name, value in zip(header, raw, strict=False):
                if name is not None:
                    value = _cell(value)
                    if value not in (None, ""):
                        row[name] = value
            yield row
    except (csv.Error, UnicodeDecodeError) as error:
        raise ImportFileError(_("The file is not UTF-8 CSV: %(e)s") % {"e": error}) from None


def count_rows(handle: IO[bytes], fmt: str) -> int | None:
    """Data rows in the file (for the progress bar): line count for CSV, the sheet's
    dimension for XLSX; None when unknown."""
    if fmt == "csv":
        lines = 0
        last = b"\n"
        while chunk := handle.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
        if last != b"\n":
            lines += 1
        return max(lines - 1, 0)
    from openpyxl import load_workbook

    try:
        sheet = load_workbook(handle, read_only=True).worksheets[0]
    except Exception:  # noqa: BLE001
        return None
    return max((sheet.max_row or 1) - 1, 0) if sheet.max_row else None


# Chunks in the API's shape -------------------------------------------------------------------


@dataclass
class Chunk:
    rows: list[dict[str, Any]]
    # File row numbers (2 = the first data row) of each API object, and for purchases of each
    # item in it.
    numbers: list[list[int]]
    file_rows: int


def chunks(rows: Iterator[dict[str, Any]], kind: str, size: int) -> Iterator[Chunk]:
    if kind != ImportKind.PURCHASES:
        batch: list[dict[str, Any]] = []
        numbers: list[list[int]] = []
        for number, row in enumerate(rows, start=2):
            batch.append(row)
            numbers.append([number])
            if len(batch) >= size:
                yield Chunk(batch, numbers, len(batch))
                batch, numbers = [], []
        if batch:
            yield Chunk(batch, numbers, len(batch))
        return

    purchases: list[dict[str, Any]] = []
    numbers = []
    file_rows = 0
    current: dict[str, Any] | None = None
    for number, row in enumerate(rows, start=2):
        key = row.get("external_id")
        if current is None or key is None or key != current.get("external_id"):
            if file_rows >= size and current is not None:
                yield Chunk(purchases, numbers, file_rows)
                purchases, numbers, file_rows = [], [], 0
            current = {k: v for k, v in row.items() if k not in _ITEM_COLUMNS}
            current["items"] = []
            purchases.append(current)
            numbers.append([number])
        else:
            numbers[-1].append(number)
        if "sku" in row:
            current["items"].append({k: row[k] for k in _ITEM_COLUMNS if k in row})
        file_rows += 1
    if purchases:
        yield Chunk(purchases, numbers, file_rows)


def _file_error(error: bulk.RowError, chunk: Chunk) -> dict[str, Any]:
    rows = chunk.numbers[error.index]
    field, row = error.field, rows[0]
    match = _ITEM_FIELD.fullmatch(field)
    if match:
        position = int(match.group(1))
        # Item k of a purchase is on the k-th of its rows that has a sku.
        row = rows[min(position, len(rows) - 1)]
        field = match.group(2)
    return {"row": row, "field": field, "message": error.message}


def _upsert(kind: str, rows: list[dict[str, Any]], actor: Any) -> bulk.BulkResult:
    if kind == ImportKind.CLIENTS:
        return bulk.client_upsert_many(rows=rows, actor=actor, source=ClientSource.IMPORT)
    if kind == ImportKind.PRODUCTS:
        return bulk.product_upsert_many(rows=rows, actor=actor)
    if kind == ImportKind.PURCHASES:
        return bulk.purchase_upsert_many(rows=rows, actor=actor)
    return bulk.consent_import_many(rows=rows, actor=actor, source=ConsentSource.IMPORT)


class _DryRunRollback(Exception):
    pass


def _process(kind: str, rows: list[dict[str, Any]], actor: Any, dry_run: bool) -> bulk.BulkResult:
    if not dry_run:
        return _upsert(kind, rows, actor)
    result: bulk.BulkResult | None = None
    try:
        with transaction.atomic():
            result = _upsert(kind, rows, actor)
            raise _DryRunRollback
    except _DryRunRollback:
        pass
    assert result is not None
    return result


# Jobs ------------------------------------------------------------------------------------------


def import_job_create(
    *, kind: str, upload: UploadedFile, user: Any, dry_run: bool = True
) -> ImportJob:
    """Store an uploaded file as a new (dry-run) job; checks the format and counts the rows."""
    fmt = file_format(upload.name or "")
    job = ImportJob(
        kind=kind,
        original_name=(upload.name or "")[:255],
        dry_run=dry_run,
        user=user if getattr(user, "is_authenticated", False) else None,
    )
    job.file.save(f"{kind}.{fmt}", upload, save=False)
    with job.file.open("rb") as handle:
        job.total_rows = count_rows(handle, fmt)
    job.save()
    return job


def import_files_purge(*, now: dt.datetime | None = None, days: int | None = None) -> int:
    """Delete uploaded files once every job that reads them finished ``days`` ago (152-FZ: a
    client file is personal data and the import has stored what it needed). The jobs stay, with
    their counts and errors, and say the file was removed. Returns the number of files deleted.
    """
    days = settings.IMPORT_FILE_RETENTION_DAYS if days is None else days
    if days <= 0:
        return 0
    cutoff = (now or timezone.now()) - dt.timedelta(days=days)
    still_needed = ImportJob.objects.filter(
        Q(status__in=[ImportStatus.QUEUED, ImportStatus.RUNNING]) | Q(updated_at__gt=cutoff),
        file=OuterRef("file"),
    )
    names = sorted(
        set(
            ImportJob.objects.exclude(file="")
            .filter(~Exists(still_needed))
            .values_list("file", flat=True)
        )
    )
    storage = ImportJob._meta.get_field("file").storage
    for name in names:
        storage.delete(name)
    ImportJob.objects.filter(file__in=names).update(file="")
    return len(names)


def import_job_confirm(*, job: ImportJob, user: Any) -> ImportJob:
    """After a dry run: a new job that imports the same file for real."""
    return ImportJob.objects.create(
        kind=job.kind,
        file=job.file.name,
        original_name=job.original_name,
        dry_run=False,
        user=user if getattr(user, "is_authenticated", False) else None,
        total_rows=job.total_rows,
    )


def import_job_start(*, job: ImportJob) -> None:
    """Run small files now, queue big ones (after the current transaction commits)."""
    if job.total_rows is not None and job.total_rows <= settings.IMPORT_INLINE_MAX_ROWS:
        import_job_run(job_id=job.pk)
        return
    from crm.tasks import import_job_run_task

    transaction.on_commit(lambda: import_job_run_task.delay(job.pk))


def import_job_run(*, job_id: int, chunk_rows: int | None = None) -> ImportJob:
    """Process a job's file chunk by chunk; progress and counts are saved after every chunk.

    Re-running a finished job does nothing; a job interrupted midway starts over, which is safe
    because the bulk services are idempotent.
    """
    size = chunk_rows or settings.IMPORT_CHUNK_ROWS
    claimed = ImportJob.objects.filter(
        pk=job_id, status__in=[ImportStatus.QUEUED, ImportStatus.RUNNING]
    ).update(
        status=ImportStatus.RUNNING,
        started_at=timezone.now(),
        processed_rows=0,
        created=0,
        updated=0,
        unchanged=0,
        error_count=0,
        errors=[],
        message="",
    )
    job = ImportJob.objects.select_related("user").get(pk=job_id)
    if not claimed:
        return job
    errors: list[dict[str, Any]] = []
    try:
        fmt = file_format(job.file.name or "")
        with job.file.open("rb") as handle:
            for chunk in chunks(read_rows(handle, fmt, job.kind), job.kind, size):
                result = _process(job.kind, chunk.rows, job.user, job.dry_run)
                bad_rows: set[int] = set()
                for error in result.errors:
                    mapped = _file_error(error, chunk)
                    bad_rows.update(chunk.numbers[error.index])
                    if len(errors) < MAX_STORED_ERRORS:
                        errors.append(mapped)
                ImportJob.objects.filter(pk=job_id).update(
                    processed_rows=F("processed_rows") + chunk.file_rows,
                    created=F("created") + result.created,
                    updated=F("updated") + result.updated,
                    unchanged=F("unchanged") + result.unchanged,
                    error_count=F("error_count") + len(bad_rows),
                    errors=errors,
                    updated_at=timezone.now(),
                )
    except ImportFileError as error:
        _finish(job_id, ImportStatus.FAILED, str(error))
    except OperationalError:
        raise  # the job stays running; the task's retry starts it over
    except Exception as error:
        _finish(job_id, ImportStatus.FAILED, _("The import stopped: %(e)s") % {"e": error})
        raise
    else:
        _finish(job_id, ImportStatus.DONE, "")
    job.refresh_from_db()
    return job


def _finish(job_id: int, status: str, message: str) -> None:
    now: datetime = timezone.now()
    fields: dict[str, Any] = {"status": status, "message": message, "finished_at": now}
    if status == ImportStatus.DONE:
        fields["total_rows"] = F("processed_rows")
    ImportJob.objects.filter(pk=job_id).update(**fields)
