"""Local HTTP servers that reproduce Zadarma's and Mango Office's documented APIs, for tests.

Each verifies the signature of our requests exactly as the provider documents it, answers with
the documented reply, records what it accepted, and builds (or posts) signed webhooks to our
endpoints. Loopback only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_ZADARMA_SIGNED = {
    "NOTIFY_START": ("caller_id", "called_did", "call_start"),
    "NOTIFY_INTERNAL": ("caller_id", "called_did", "call_start"),
    "NOTIFY_IVR": ("caller_id", "called_did", "call_start"),
    "NOTIFY_END": ("caller_id", "called_did", "call_start"),
    "NOTIFY_ANSWER": ("caller_id", "destination", "call_start"),
    "NOTIFY_OUT_START": ("internal", "destination", "call_start"),
    "NOTIFY_OUT_END": ("internal", "destination", "call_start"),
}


def _hmac_sha1_hex_b64(secret: str, text: str) -> str:
    hexdigest = hmac.new(secret.encode(), text.encode(), hashlib.sha1).hexdigest()
    return base64.b64encode(hexdigest.encode()).decode()


@dataclass
class _Server:
    server: ThreadingHTTPServer | None = None
    thread: threading.Thread | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class _Handler(BaseHTTPRequestHandler):
    fake: Any

    def log_message(self, *args: Any) -> None:  # quiet in test output
        pass

    def reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


# Zadarma -------------------------------------------------------------------------------------


class ZadarmaFake(_Server):
    """``GET /v1/request/callback/`` with Zadarma's Authorization header; signed NOTIFY_* hooks."""

    def __init__(self, key: str, secret: str) -> None:
        super().__init__()
        self.key, self.secret = key, secret

    def start(self) -> ZadarmaFake:
        fake = self

        class Handler(_Handler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                parsed = urllib.parse.urlsplit(self.path)
                params = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
                if not fake.authorized(parsed.path, params, self.headers.get("Authorization", "")):
                    fake.rejected.append(params)
                    self.reply(401, {"status": "error", "message": "Not authorized"})
                    return
                if parsed.path != "/v1/request/callback/":
                    self.reply(404, {"status": "error", "message": "Wrong method"})
                    return
                if not params.get("from") or not params.get("to"):
                    self.reply(400, {"status": "error", "message": "from and to are required"})
                    return
                fake.requests.append(params)
                self.reply(
                    200,
                    {
                        "status": "success",
                        "from": params["from"],
                        "to": params["to"],
                        "time": 1700000000 + len(fake.requests),
                    },
                )

        self._serve(Handler)
        return self

    def authorized(self, method: str, params: dict[str, str], header: str) -> bool:
        # As Zadarma documents it: parameters sorted by name, RFC 1738 query, its md5 appended.
        query = urllib.parse.urlencode(sorted(params.items()))
        text = method + query + hashlib.md5(query.encode()).hexdigest()
        expected = f"{self.key}:{_hmac_sha1_hex_b64(self.secret, text)}"
        return hmac.compare_digest(expected, header)

    def signature(self, fields: dict[str, str]) -> str:
        names = _ZADARMA_SIGNED[fields["event"]]
        return _hmac_sha1_hex_b64(self.secret, "".join(fields.get(n, "") for n in names))

    def webhook(self, **fields: str) -> tuple[dict[str, str], dict[str, str]]:
        """(form fields, headers) of a signed NOTIFY_* webhook."""
        return fields, {"Signature": self.signature(fields)}

    def post_webhook(self, url: str, **fields: str) -> int:
        data, headers = self.webhook(**fields)
        request = urllib.request.Request(
            url, data=urllib.parse.urlencode(data).encode(), headers=headers
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)


# Mango Office --------------------------------------------------------------------------------


class MangoFake(_Server):
    """``POST /vpbx/commands/callback`` (vpbx_api_key, sign, json); signed events/* hooks."""

    def __init__(self, api_key: str, salt: str) -> None:
        super().__init__()
        self.api_key, self.salt = api_key, salt

    def sign(self, body: str) -> str:
        return hashlib.sha256(f"{self.api_key}{body}{self.salt}".encode()).hexdigest()

    def start(self) -> MangoFake:
        fake = self

        class Handler(_Handler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                body = form.get("json", "")
                if form.get("vpbx_api_key") != fake.api_key or not hmac.compare_digest(
                    fake.sign(body), form.get("sign", "")
                ):
                    fake.rejected.append(form)
                    self.reply(401, {"result": 3102})  # documented: wrong key or signature
                    return
                if self.path != "/vpbx/commands/callback":
                    self.reply(404, {"result": 3100})
                    return
                command = json.loads(body)
                if not command.get("from", {}).get("extension") or not command.get("to_number"):
                    self.reply(200, {"result": 3103})
                    return
                fake.requests.append(command)
                self.reply(200, {"result": 1000})

        self._serve(Handler)
        return self

    @property
    def base_url(self) -> str:
        return f"{self.url}/vpbx/"

    def webhook(self, payload: dict[str, Any]) -> dict[str, str]:
        """The signed form of an events/* or result/* webhook."""
        body = json.dumps(payload, ensure_ascii=False)
        return {"vpbx_api_key": self.api_key, "sign": self.sign(body), "json": body}

    def post_webhook(self, url: str, payload: dict[str, Any]) -> int:
        request = urllib.request.Request(
            url, data=urllib.parse.urlencode(self.webhook(payload)).encode()
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
