"""The one-shot loopback server that receives the authorization code (RFC 8252 section 7.3)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from worker.base.errors import ConfigError

PAGE = (
    "<!doctype html><html><body style='font-family:sans-serif'><h2>leadsync</h2>"
    "<p>{message}</p><p>You can close this window.</p></body></html>"
)


@dataclass
class CallbackResult:
    params: dict[str, str]


class _Server(HTTPServer):
    expected_path: str
    result: CallbackResult | None = None


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path != self.server.expected_path:
            self.send_error(404)
            return
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.server.result = CallbackResult(params)
        ok = "code" in params and "error" not in params
        message = "Authorization received; return to the terminal." if ok else (
            "Authorization was not granted; see the terminal."
        )
        body = PAGE.format(message=message).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return  # the query string carries the code: never log it


class CallbackServer:
    """Listens on the loopback address and port of `redirect_uri` until one callback arrives."""

    def __init__(self, redirect_uri: str) -> None:
        url = urlparse(redirect_uri)
        if url.scheme != "http" or url.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ConfigError(
                "LEADSYNC_REDIRECT_URI: `auth login` needs a loopback http:// redirect URI "
                "(for example http://127.0.0.1:8765/callback)"
            )
        try:
            self._server = _Server(("127.0.0.1", url.port or 80), _Handler)
        except OSError as exc:
            raise ConfigError(
                f"LEADSYNC_REDIRECT_URI: cannot listen on 127.0.0.1:{url.port}: {exc.strerror}"
            ) from None
        self._server.expected_path = url.path or "/"
        self._server.timeout = 0.5

    def wait(self, timeout_s: float) -> CallbackResult | None:
        deadline = time.monotonic() + timeout_s
        try:
            while self._server.result is None and time.monotonic() < deadline:
                self._server.handle_request()
        finally:
            self._server.server_close()
        return self._server.result
