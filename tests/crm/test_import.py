"""File import: dry run, row errors with file row numbers, confirm, same result as the API."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client as HttpClient
from django.urls import reverse
from django.utils import timezone

from crm import importing
from crm.models import Client, ImportJob, Purchase, PurchaseItem
from crm.roles import MARKETER, OPERATOR
from tests.factories import ClientFactory, ProductFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _english(settings: pytest.FixtureRequest) -> None:
    """Row errors are asserted in English (Russian is the default language)."""
    settings.LANGUAGE_CODE = "en"  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def staff(role: str) -> HttpClient:
    user = User.objects.create_user(username=role.lower(), password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    http = HttpClient()
    http.force_login(user)
    return http


CLIENTS_CSV = (
    "external_id;last_name;phone;city\n"
    "C1;Петрова;8 (912) 345-67-89;Омск\n"
    "C2;Сидоров;not a phone;\n"
    "C3;Иванов;;Казань\n"
).encode()


def test_a_marketer_uploads_previews_and_confirms_a_client_file():
    http = staff(MARKETER)

    response = http.post(
        reverse("admin:crm_importjob_add"),
        {"kind": "clients", "file": SimpleUploadedFile("clients.csv", CLIENTS_CSV)},
    )

    dry = ImportJob.objects.get()
    assert response.status_code == 302
    assert (dry.status, dry.dry_run, dry.total_rows, dry.created, dry.error_count) == (
        "done",
        True,
        3,
        2,
        1,
    )
    assert dry.errors == [
        {"row": 3, "field": "phone", "message": "Not a valid phone number: not a phone."}
    ]
    assert not Client.objects.exists()
    page = http.get(reverse("admin:crm_importjob_change", args=[dry.pk]))
    assert "Not a valid phone number" in page.content.decode()

    http.post(reverse("admin:crm_importjob_confirm", args=[dry.pk]))

    real = ImportJob.objects.exclude(pk=dry.pk).get()
    assert (real.status, real.dry_run, real.created, real.error_count) == ("done", False, 2, 1)
    omsk = Client.objects.get(external_id="C1")
    assert (omsk.phone.as_e164, str(omsk.time_zone), omsk.source) == (
        "+79123456789",
        "Asia/Omsk",
        "import",
    )
    status = http.get(reverse("admin:crm_importjob_status", args=[real.pk])).json()
    assert (status["percent"], status["created"]) == (100, 2)


def test_an_operator_can_neither_import_nor_export():
    http = staff(OPERATOR)

    assert http.get(reverse("admin:crm_importjob_add")).status_code == 403
    assert http.get(reverse("admin:crm_client_export")).status_code == 403
    assert (
        "Import from file" not in http.get(reverse("admin:crm_client_changelist")).content.decode()
    )


def test_a_marketer_exports_clients_and_the_export_is_audited():
    ClientFactory(external_id="C1", phone="+79123456789")
    http = staff(MARKETER)

    response = http.post(
        reverse("admin:crm_client_export"),
        {
            "format": "0",
            "resource": "0",
            **{f"clientresource_{f}": "on" for f in ("external_id", "phone")},
        },
    )

    assert response.status_code == 200
    assert "+79123456789" in response.content.decode()
    from crm.models import AuditLog

    assert AuditLog.objects.filter(action="data_exported").count() == 1


def test_purchase_rows_group_into_purchases_like_the_api(tmp_path):
    ClientFactory(external_id="C1")
    ProductFactory(sku="MILK", price=Decimal("80.00"))
    csv_text = (
        "external_id,client_external_id,purchased_at,sku,quantity,unit_price\n"
        "R1,C1,2025-03-01 12:00,MILK,2,80\n"
        "R1,C1,2025-03-01 12:00,NOPE,1,10\n"
        "R2,C1,2025-03-02 12:00,MILK,1,80\n"
        "R2,C1,2025-03-02 12:00,MILK,1,75.5\n"
    )
    upload = SimpleUploadedFile("p.csv", csv_text.encode())
    job = importing.import_job_create(kind="purchases", upload=upload, user=None, dry_run=False)

    done = importing.import_job_run(job_id=job.pk, chunk_rows=1)

    assert (done.status, done.created, done.error_count) == ("done", 1, 2)
    assert done.errors == [{"row": 3, "field": "sku", "message": "No product with this SKU."}]
    r2 = Purchase.objects.get(external_id="R2")
    assert r2.total == Decimal("155.50")
    assert PurchaseItem.objects.filter(purchase=r2).count() == 2
    again = importing.import_job_run(job_id=importing.import_job_confirm(job=job, user=None).pk)
    assert (again.created, again.unchanged) == (0, 1)


def test_an_xlsx_file_imports_and_a_file_without_the_key_column_fails(tmp_path):
    from openpyxl import Workbook

    book = Workbook()
    book.active.append(["external_id", "first_name", "phone"])
    book.active.append(["C9", "Ольга", 79123456789])
    path = tmp_path / "c.xlsx"
    book.save(path)
    job = importing.import_job_create(
        kind="clients",
        upload=SimpleUploadedFile("c.xlsx", path.read_bytes()),
        user=None,
        dry_run=False,
    )
    bad = importing.import_job_create(
        kind="clients",
        upload=SimpleUploadedFile("c.csv", b"name\nx\n"),
        user=None,
        dry_run=False,
    )

    assert importing.import_job_run(job_id=job.pk).created == 1
    assert Client.objects.get(external_id="C9").phone.as_e164 == "+79123456789"
    failed = importing.import_job_run(job_id=bad.pk)
    assert failed.status == "failed" and "external_id" in failed.message


def test_uploaded_files_are_deleted_after_the_retention_period(settings, tmp_path):
    settings.IMPORT_FILE_RETENTION_DAYS = 7
    old_upload = SimpleUploadedFile("old.csv", CLIENTS_CSV)
    dry = importing.import_job_create(kind="clients", upload=old_upload, user=None, dry_run=True)
    importing.import_job_run(job_id=dry.pk)
    real = importing.import_job_run(job_id=importing.import_job_confirm(job=dry, user=None).pk)
    fresh = importing.import_job_create(
        kind="clients", upload=SimpleUploadedFile("new.csv", CLIENTS_CSV), user=None, dry_run=True
    )
    old_path, fresh_path = Path(dry.file.path), Path(fresh.file.path)
    later = timezone.now() + dt.timedelta(days=8)
    # A job still queued on the fresh file keeps it, however old.
    ImportJob.objects.filter(pk=fresh.pk).update(updated_at=timezone.now() - dt.timedelta(days=30))

    deleted = importing.import_files_purge(now=later)

    assert deleted == 1 and not old_path.exists() and fresh_path.exists()
    for job in (dry, real):
        job.refresh_from_db()
        assert not job.file and job.status == "done" and job.created == 2
    # The dry run can no longer be confirmed: the file is gone.
    http = staff(MARKETER)
    assert b"confirm" not in http.get(reverse("admin:crm_importjob_change", args=[dry.pk])).content
    response = http.post(reverse("admin:crm_importjob_confirm", args=[dry.pk]), follow=True)
    assert b"upload it again" in response.content
    assert ImportJob.objects.count() == 3
    assert importing.import_files_purge(now=later) == 0


def test_the_import_file_purge_task_is_scheduled() -> None:
    from crm.schedules import collect_schedules
    from crm.tasks import import_files_purge

    names = {s.name: s.task for s in collect_schedules()}
    assert names["crm: uploaded import files retention"] == "crm.tasks.import_files_purge"
    assert import_files_purge.apply().get() == 0
