"""Admin pages of file import: upload, dry-run preview with row errors, progress, confirm.

``FileImportAdminMixin`` adds an "Import from file" button to a model's changelist; the pages
themselves belong to ``ImportJobAdmin``. Client export (django-import-export) is limited to
users with ``crm.export_clients`` and written to the audit log.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _
from import_export.admin import ExportMixin

from crm import importing, services
from crm.models import AuditAction, ImportJob, ImportKind, ImportStatus
from crm.resources import ClientResource


class FileImportAdminMixin(admin.ModelAdmin):
    """Adds the "Import from file" button (``import_kind`` names what the file holds)."""

    import_kind: str = ""
    change_list_template = "admin/crm/change_list_file_import.html"

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        extra_context = extra_context or {}
        if request.user.has_perm("crm.add_importjob"):
            extra_context["file_import_url"] = (
                reverse("admin:crm_importjob_add") + f"?kind={self.import_kind}"
            )
        return super().changelist_view(request, extra_context)


class ClientExportMixin(ExportMixin):
    resource_classes = [ClientResource]

    def has_export_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("crm.export_clients")

    def get_export_data(self, file_format: Any, request: HttpRequest, queryset: Any, **kw: Any):
        data = super().get_export_data(file_format, request, queryset, **kw)
        services.audit_write(
            action=AuditAction.DATA_EXPORTED,
            actor=request.user,
            changes={"model": "client", "format": type(file_format).__name__},
        )
        return data


class ImportUploadForm(forms.Form):
    kind = forms.ChoiceField(label=_("what the file holds"), choices=ImportKind.choices)
    file = forms.FileField(
        label=_("file"), help_text=_("CSV (UTF-8, comma or semicolon) or XLSX, header row first.")
    )

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        try:
            importing.file_format(upload.name)
        except importing.ImportFileError as error:
            raise forms.ValidationError(str(error)) from None
        return upload


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "kind",
        "original_name",
        "dry_run",
        "status",
        "processed_rows",
        "total_rows",
        "created",
        "updated",
        "unchanged",
        "error_count",
        "user",
        "created_at",
    )
    list_filter = ("kind", "status", "dry_run")
    list_select_related = ("user",)
    ordering = ("-id",)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The change page is the progress page; editing a job is not a thing.
        return super().has_view_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("<int:job_id>/status/", wrap(self.status_view), name="crm_importjob_status"),
            path("<int:job_id>/confirm/", wrap(self.confirm_view), name="crm_importjob_confirm"),
            *super().get_urls(),
        ]

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None):
        if not self.has_add_permission(request):
            return HttpResponse(status=403)
        if request.method == "POST":
            form = ImportUploadForm(request.POST, request.FILES)
            if form.is_valid():
                job = importing.import_job_create(
                    kind=form.cleaned_data["kind"],
                    upload=form.cleaned_data["file"],
                    user=request.user,
                    dry_run=True,
                )
                importing.import_job_start(job=job)
                return HttpResponseRedirect(reverse("admin:crm_importjob_change", args=[job.pk]))
        else:
            form = ImportUploadForm(initial={"kind": request.GET.get("kind", ImportKind.CLIENTS)})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Import from file"),
            "form": form,
            "columns": importing.COLUMNS,
        }
        return TemplateResponse(request, "admin/crm/importjob/upload.html", context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ):
        job = get_object_or_404(ImportJob, pk=object_id)
        if not self.has_view_permission(request, job):
            return HttpResponse(status=403)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": str(job),
            "job": job,
            "original": job,
            "can_confirm": job.dry_run
            and job.status == ImportStatus.DONE
            and bool(job.file)
            and self.has_add_permission(request),
            "running": job.status in (ImportStatus.QUEUED, ImportStatus.RUNNING),
            "status_url": reverse("admin:crm_importjob_status", args=[job.pk]),
        }
        return TemplateResponse(request, "admin/crm/importjob/progress.html", context)

    def status_view(self, request: HttpRequest, job_id: int) -> JsonResponse:
        job = get_object_or_404(ImportJob, pk=job_id)
        if not self.has_view_permission(request, job):
            return JsonResponse({}, status=403)
        return JsonResponse(
            {
                "status": job.status,
                "percent": job.percent,
                "processed_rows": job.processed_rows,
                "total_rows": job.total_rows,
                "created": job.created,
                "updated": job.updated,
                "unchanged": job.unchanged,
                "error_count": job.error_count,
                "message": job.message,
            }
        )

    def confirm_view(self, request: HttpRequest, job_id: int) -> HttpResponse:
        job = get_object_or_404(ImportJob, pk=job_id)
        if request.method != "POST" or not self.has_add_permission(request):
            return HttpResponse(status=405 if request.method != "POST" else 403)
        if not (job.dry_run and job.status == ImportStatus.DONE):
            messages.error(request, _("Only a finished dry run can be confirmed."))
            return HttpResponseRedirect(reverse("admin:crm_importjob_change", args=[job.pk]))
        if not job.file:
            messages.error(
                request,
                _("The file was deleted after the retention period; upload it again."),
            )
            return HttpResponseRedirect(reverse("admin:crm_importjob_change", args=[job.pk]))
        real = importing.import_job_confirm(job=job, user=request.user)
        importing.import_job_start(job=real)
        return HttpResponseRedirect(reverse("admin:crm_importjob_change", args=[real.pk]))
