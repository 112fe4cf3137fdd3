"""The webhooks' own WSGI handler, in front of the site's.

Gateways call back hundreds of times a second (Kannel: a request per delivery report), and a
callback needs none of what the site's middleware does for people: sessions, the user, CSRF,
the language, messages, the login lockout. Each hook checks its caller itself
(:mod:`messaging.hooks.security`: a secret or the provider's signature, and an IP allow-list).
Django's full stack costs a callback about as much CPU as storing its event, so requests under
``/hooks/`` go to a handler without middleware; the signals that keep database connections
healthy (``request_started``/``request_finished``) still fire, and errors become responses as
everywhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler

HOOKS_PREFIX = "/hooks/"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class HooksHandler(WSGIHandler):
    """Django's WSGI handler with no middleware: URL resolution, the view, its response."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        # BaseHandler._get_response is what load_middleware wraps; the stubs leave it out.
        get_response = self._get_response  # type: ignore[attr-defined]
        self._middleware_chain = convert_exception_to_response(get_response)


def with_hooks(site: WSGIApp, hooks: WSGIApp | None = None) -> WSGIApp:
    """``site`` for every path but ``/hooks/...``, which goes to ``hooks`` (a HooksHandler)."""
    hooks_app = hooks or HooksHandler()

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").startswith(HOOKS_PREFIX):
            return hooks_app(environ, start_response)
        return site(environ, start_response)

    return application
