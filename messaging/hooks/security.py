"""Who may call a webhook: a per-backend secret and an IP allow-list, checked before anything else.

Settings per backend (``backend`` upper-cased, e.g. ``kannel`` -> ``HOOKS_KANNEL_SECRET``):

- ``HOOKS_<BACKEND>_SECRET``: the shared secret. The caller sends it as the ``token`` query or form
  parameter, or in the ``X-Lichno-Token`` header. Empty means "no secret", which is refused unless
  ``DEBUG`` is on, so a forgotten secret fails loudly instead of opening the hook to everyone.
- ``HOOKS_<BACKEND>_ALLOWED_IPS``: addresses or networks (``127.0.0.1``, ``10.0.0.0/8``); empty
  allows any address (the secret still applies).

Providers that sign their requests (Zadarma, Mango) verify the signature with
:func:`constant_time_equals` in their own module and call :func:`verify_ip` for the allow-list.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

TOKEN_PARAM = "token"
TOKEN_HEADER = "X-Lichno-Token"


def constant_time_equals(a: str | bytes, b: str | bytes) -> bool:
    """Compare secrets without leaking their common prefix through timing."""
    a_bytes = a.encode() if isinstance(a, str) else a
    b_bytes = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(a_bytes, b_bytes)


def hook_setting(backend: str, name: str, default: Any = None) -> Any:
    return getattr(settings, f"HOOKS_{backend.upper()}_{name}", default)


def hook_secret(backend: str) -> str:
    return str(hook_setting(backend, "SECRET", "") or "")


@lru_cache(maxsize=64)
def _networks(spec: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in spec if item.strip())


def ip_allowed(address: str, allowed: Iterable[str]) -> bool:
    """True when ``allowed`` is empty or one of its addresses/networks contains ``address``."""
    networks = _networks(tuple(allowed))
    if not networks:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_ip(request: HttpRequest) -> str:
    # REMOTE_ADDR only: X-Forwarded-For is whatever the caller says unless a trusted proxy set it,
    # and a proxy in front of the hooks should then be configured to overwrite REMOTE_ADDR.
    return str(request.META.get("REMOTE_ADDR", ""))


def verify_ip(request: HttpRequest, backend: str) -> None:
    setting = hook_setting(backend, "ALLOWED_IPS", []) or []
    allowed = setting.split(",") if isinstance(setting, str) else list(setting)
    if not ip_allowed(client_ip(request), allowed):
        raise PermissionDenied(f"address not allowed for {backend} hooks")


def request_token(request: HttpRequest) -> str:
    return str(
        request.headers.get(TOKEN_HEADER)
        or request.GET.get(TOKEN_PARAM)
        or request.POST.get(TOKEN_PARAM)
        or ""
    )


def verify_secret(request: HttpRequest, backend: str) -> None:
    secret = hook_secret(backend)
    if not secret:
        if settings.DEBUG:
            return
        raise PermissionDenied(f"HOOKS_{backend.upper()}_SECRET is not set")
    if not constant_time_equals(request_token(request), secret):
        raise PermissionDenied(f"bad token for {backend} hooks")


def verify_hook(request: HttpRequest, backend: str) -> None:
    """Raise ``PermissionDenied`` unless an allowed address sent the right secret."""
    verify_ip(request, backend)
    verify_secret(request, backend)
