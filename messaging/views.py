"""Public, unauthenticated views: a tracked link and a one-click unsubscribe."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse


def tracked_link(request: HttpRequest, token: str) -> HttpResponse:
    raise NotImplementedError


def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    raise NotImplementedError
