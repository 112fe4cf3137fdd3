"""A WSGI application that answers every request with an empty 200 and does nothing else.

The benchmark points Kannel's delivery reports at it (served by :mod:`messaging.peers.web`)
to measure the most Kannel's callbacks could reach on the machine without Django or a database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Length", "0")])
    return [b""]
