"""One error format for the whole API.

Every error answers ``{"detail": "<summary>", "errors": [{"index", "field", "message"}]}``;
``index`` is the position in a bulk batch (null elsewhere), ``field`` a dotted path ("" when the
error is not about one field). Bulk responses carry the same ``errors`` list.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext as _
from django.views.defaults import page_not_found
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request is too large."
    default_code = "payload_too_large"


def _flatten(detail: Any, prefix: str = "") -> list[dict[str, Any]]:
    if isinstance(detail, dict):
        out = []
        for key, value in detail.items():
            name = "" if key in ("non_field_errors", "detail") else str(key)
            path = f"{prefix}.{name}" if prefix and name else prefix or name
            out.extend(_flatten(value, path))
        return out
    if isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            return [{"index": None, "field": prefix, "message": str(item)} for item in detail]
        out = []
        for position, item in enumerate(detail):
            out.extend(_flatten(item, f"{prefix}[{position}]"))
        return out
    return [{"index": None, "field": prefix, "message": str(detail)}]


def error_body(detail: str, errors: list[dict[str, Any]]) -> dict[str, Any]:
    return {"detail": detail, "errors": errors}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    if isinstance(exc, exceptions.ValidationError):
        summary = _("Invalid input.")
        errors = _flatten(exc.detail)
    else:
        summary = str(exc.detail) if not isinstance(exc.detail, dict | list) else _("Error.")
        errors = [{"index": None, "field": "", "message": summary}]
    response.data = error_body(summary, errors)
    return response


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler404``: the API's error format under /api/, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        body = error_body(
            _("Not found."), [{"index": None, "field": "", "message": _("Not found.")}]
        )
        return JsonResponse(body, status=404)
    return page_not_found(request, exception)
