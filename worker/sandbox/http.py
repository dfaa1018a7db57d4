"""Request and reply types, and the JSON/HTML/redirect reply builders every handler uses."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl


@dataclass
class Request:
    method: str
    path: str
    query_string: str
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    _query: dict[str, str] | None = field(default=None, repr=False)

    @property
    def query(self) -> dict[str, str]:
        """Query parameters; the first value of a repeated name wins."""
        if self._query is None:
            parsed: dict[str, str] = {}
            for name, value in parse_qsl(self.query_string, keep_blank_values=True):
                parsed.setdefault(name, value)
            self._query = parsed
        return self._query

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def form(self) -> dict[str, str]:
        """The urlencoded form body (empty unless the Content-Type says form)."""
        if self.content_type != "application/x-www-form-urlencoded" or not self.body:
            return {}
        parsed: dict[str, str] = {}
        text = self.body.decode("utf-8", errors="replace")
        for name, value in parse_qsl(text, keep_blank_values=True):
            parsed.setdefault(name, value)
        return parsed


@dataclass
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    drop: bool = False  # close the connection without answering
    delay_s: float = 0.0


DROP = Reply(0, drop=True)


def json_reply(status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> Reply:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Reply(status, body, "application/json", headers or [])


def api_error(status: int, key: str, message: str) -> Reply:
    """Constant Contact's usual error shape: an array of {error_key, error_message}."""
    return json_reply(status, [{"error_key": key, "error_message": message}])


def unauthorized() -> Reply:
    """401 is a single object, with API Gateway's WWW-Authenticate header (fact 10)."""
    return json_reply(401, {"error_key": "unauthorized", "error_message": "Unauthorized"},
                      [("WWW-Authenticate", "Bearer realm=api.cc.email")])


def throttled(key: str) -> Reply:
    """429 is a single object with no Retry-After or rate-limit headers (fact 11)."""
    message = "Too Many Requests" if key == "throttled" else "Limit Exceeded"
    return json_reply(429, {"error_key": key, "error_message": message})


def oauth_error(status: int, error: str, description: str,
                headers: list[tuple[str, str]] | None = None) -> Reply:
    """The token endpoint's OAuth 2.0 error object (RFC 6749 5.2)."""
    return json_reply(status, {"error": error, "error_description": description}, headers)


def html_reply(status: int, html: str) -> Reply:
    return Reply(status, html.encode(), "text/html; charset=utf-8")


def redirect(location: str) -> Reply:
    return Reply(302, b"", "text/plain", [("Location", location), ("Cache-Control", "no-store")])


def parse_json(body: bytes) -> Any:
    """Decoded JSON; raises ValueError with a short reason on bad input."""
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("the body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"malformed JSON at line {exc.lineno} column {exc.colno}") from None
