"""The Constant Contact V3 client for contacts: the only module that talks HTTP to the API.

`requests` exceptions and error answers are translated here, in `error_for` and `_send`, into
the leadsync error tree (a test walks the mapping); nothing from `requests` escapes. Constant
Contact answers errors in three shapes (facts sheet 6): an array of `{error_key,
error_message}`, a single such object (401, 429), and the OAuth `{error, error_description}`.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin

import requests

from worker.base.errors import (
    ConflictError,
    ContactsAPIError,
    PermanentAPIError,
    QuotaExceededError,
    ThrottledError,
    TransientAPIError,
    UnauthorizedError,
)
from worker.base.redaction import scrub
from worker.base.settings import Settings

INCLUDE_ALL = "custom_fields,list_memberships,phone_numbers,street_addresses"
PERMANENT_STATUSES = frozenset({400, 403, 404, 405, 410, 413, 415, 422})
# Called before every request with `reserve` (True for lookups that may use the quota reserve):
# the fleet limiter plugs in here so no request can bypass it.
BeforeRequest = Callable[[bool], None]
# Called after `before_request` with the token about to be sent; answers the token to send (the
# limiter's wait can outlast a short-lived token: delivery plugs in access.token_checker).
TokenCheck = Callable[[str], str]


def _no_gate(_reserve: bool) -> None:
    return None


def _as_given(token: str) -> str:
    return token


def error_fields(body: Any) -> tuple[str | None, str]:
    """`(error_key, message)` from any of Constant Contact's three error shapes."""
    if isinstance(body, list) and body and isinstance(body[0], dict):
        body = body[0]
    if isinstance(body, dict):
        key = body.get("error_key") or body.get("error")
        message = body.get("error_message") or body.get("error_description") or ""
        return (str(key) if key else None), str(message)
    if isinstance(body, str):
        return None, body[:300]
    return None, ""


def retry_after_s(value: str | None, *, now: float | None = None) -> float | None:
    """`Retry-After` as seconds: a number or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_for(status: int, body: Any, retry_after: float | None = None) -> ContactsAPIError:
    """The leadsync error for one error answer (status >= 300)."""
    key, message = error_fields(body)
    text = scrub(f"HTTP {status}" + (f" {key}" if key else "")
                 + (f": {message}" if message else ""))
    kwargs: dict[str, Any] = {"status_code": status, "error_key": key,
                              "retry_after_s": retry_after}
    if status == 401:
        return UnauthorizedError(text, **kwargs)
    if status == 429:
        if key == "quota_exceeded":
            return QuotaExceededError(text, **kwargs)
        return ThrottledError(text, **kwargs)  # `throttled`, or a queue-full 429: wait and retry
    if status == 409:
        return ConflictError(text, **kwargs)
    if status in PERMANENT_STATUSES:
        return PermanentAPIError(text, **kwargs)
    if status >= 500 or status in (202, 408, 425):
        return TransientAPIError(text, **kwargs)
    if 400 <= status < 500:
        return PermanentAPIError(text, **kwargs)
    return TransientAPIError(text, **kwargs)  # an unexpected 3xx: try again later


class ContactsClient:
    """Calls the V3 API with a bearer token; one instance per worker process (keeps a session)."""

    def __init__(
        self,
        settings: Settings,
        *,
        session: requests.Session | None = None,
        before_request: BeforeRequest = _no_gate,
        token_check: TokenCheck = _as_given,
    ) -> None:
        self.base = settings.api_base_url.rstrip("/") + "/"
        self.timeout_s = settings.http_timeout_s
        self.session = session or requests.Session()
        self.before_request = before_request
        self.token_check = token_check

    # --- endpoints ---------------------------------------------------------------------------
    def sign_up_form(self, token: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Create or update by email (explicit consent only); (status, {contact_id, action})."""
        return self._send("POST", "contacts/sign_up_form", token, json=body)

    def find_by_email(self, token: str, address: str) -> dict[str, Any] | None:
        """The contact with this email, deleted ones included (they still block a POST)."""
        _, answer = self._send("GET", "contacts", token, params={
            "email": address, "status": "all", "include": INCLUDE_ALL})
        contacts = answer.get("contacts") or []
        return dict(contacts[0]) if contacts else None

    def create(self, token: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._send("POST", "contacts", token, json=body)[1]

    def replace(self, token: str, contact_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._send("PUT", f"contacts/{contact_id}", token, json=body)[1]

    def custom_fields(self, token: str) -> list[dict[str, Any]]:
        """Every custom field definition (follows the cursor links)."""
        fields: list[dict[str, Any]] = []
        path: str | None = "contact_custom_fields?limit=100"
        while path:
            _, answer = self._send("GET", path, token, reserve=True)
            fields.extend(answer.get("custom_fields") or [])
            href = ((answer.get("_links") or {}).get("next") or {}).get("href")
            path = _relative(href) if href else None
        return fields

    def contacts_json_import(self, token: str, body: str) -> dict[str, Any]:
        """Start a bulk import (worker/bulk/): `body` is sent as encoded, so its measured size
        is the size Constant Contact sees; answers the activity (`activity_id`, `state`)."""
        return self._send("POST", "activities/contacts_json_import", token, data=body)[1]

    def activity(self, token: str, activity_id: str) -> dict[str, Any]:
        return self._send("GET", f"activities/{activity_id}", token)[1]

    # --- transport -------------------------------------------------------------------------
    def _send(
        self,
        method: str,
        path: str,
        token: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        reserve: bool = False,
        data: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        self.before_request(reserve)
        token = self.token_check(token)
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = self.session.request(
                method, urljoin(self.base, path), json=json, params=params,
                data=None if data is None else data.encode(),
                headers=headers, timeout=self.timeout_s,
            )
        except requests.Timeout:
            raise TransientAPIError(f"{method} {_path_only(path)} timed out after "
                                    f"{self.timeout_s:g} s") from None
        except requests.ConnectionError as exc:
            raise TransientAPIError(f"{method} {_path_only(path)}: connection failed "
                                    f"({type(exc).__name__})") from None
        except requests.RequestException as exc:
            raise TransientAPIError(f"{method} {_path_only(path)}: {type(exc).__name__}") from None
        body = _json_or_text(response)
        if response.status_code >= 300 or response.status_code == 202:
            raise error_for(response.status_code, body,
                            retry_after_s(response.headers.get("Retry-After")))
        if not isinstance(body, dict):
            raise TransientAPIError(f"{method} {_path_only(path)}: HTTP "
                                    f"{response.status_code} without a JSON object")
        return response.status_code, body


def _json_or_text(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:  # requests' JSONDecodeError is a ValueError
        return response.text


def _relative(href: str) -> str:
    """`_links.next.href` is path-relative (`/v3/...`); make it relative to the base URL."""
    path = href.split("/v3/", 1)[1] if "/v3/" in href else href.lstrip("/")
    return path


def _path_only(path: str) -> str:
    return path.split("?", 1)[0]
