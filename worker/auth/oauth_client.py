"""A plain RFC 6749 / 7636 / 7009 / 8628 client: only standard parameters, so any compliant
authorization server works; Constant Contact specifics are just the endpoint URLs.

Every `requests` exception is translated here (and only here) into the leadsync error tree:
OAuthTransientError for timeouts, connection errors, 5xx and 429; OAuthServerError for an OAuth
error object. Messages are scrubbed; tokens live in fields hidden from repr.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import requests

from worker.base.errors import OAuthServerError, OAuthTransientError
from worker.base.redaction import scrub
from worker.base.settings import Settings

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass(frozen=True)
class TokenResponse:
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_in: float | None
    scope: str | None
    token_type: str
    received_at: float


@dataclass(frozen=True)
class DeviceAuthorization:
    device_code: str = field(repr=False)
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(float(value), 0.0) if value else None
    except ValueError:  # an HTTP date: fall back to our own backoff
        return None


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class OAuthClient:
    """Talks to the authorization server named in settings."""

    def __init__(self, settings: Settings, session: requests.Session | None = None) -> None:
        self.settings = settings
        self.session = session or requests.Session()
        self.timeout = settings.http_timeout_s

    # --- building blocks -----------------------------------------------------------------
    def _client_auth(self, data: dict[str, str]) -> tuple[str, str] | None:
        """Basic auth for a confidential client (as Constant Contact wants), else client_id."""
        secret = self.settings.client_secret
        if secret is not None and secret.get_secret_value():
            return (self.settings.client_id, secret.get_secret_value())
        data["client_id"] = self.settings.client_id
        return None

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            return self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.Timeout:
            raise OAuthTransientError(
                f"{url}: no answer within {self.timeout:g} s", error="timeout"
            ) from None
        except requests.RequestException as exc:
            raise OAuthTransientError(
                f"{url}: {type(exc).__name__}: {scrub(str(exc))[:200]}", error="connection_error"
            ) from None

    def _post_form(self, url: str, data: dict[str, str]) -> dict[str, Any]:
        auth = self._client_auth(data)
        response = self._send(
            "POST", url, data=data, auth=auth, headers={"Accept": "application/json"}
        )
        body = _json(response)
        if response.status_code == 429 or response.status_code >= 500:
            raise OAuthTransientError(
                f"{url} answered {response.status_code}",
                error=str(body.get("error") or "server_error"),
                status_code=response.status_code,
                retry_after_s=_retry_after(response),
            )
        if response.status_code >= 400 or "error" in body:
            error = str(body.get("error") or f"http_{response.status_code}")
            description = scrub(str(body.get("error_description") or ""))[:300]
            raise OAuthServerError(
                f"{error}: {description}" if description else error,
                error=error,
                status_code=response.status_code,
            )
        if not body:
            raise OAuthServerError(
                f"{url} answered {response.status_code} without a JSON object",
                error="invalid_response",
                status_code=response.status_code,
            )
        return body

    def _token(self, data: dict[str, str]) -> TokenResponse:
        body = self._post_form(self.settings.token_url, data)
        access = body.get("access_token")
        if not isinstance(access, str) or not access:
            raise OAuthServerError("token answer without access_token", error="invalid_response")
        refresh = body.get("refresh_token")
        expires_in = body.get("expires_in")
        return TokenResponse(
            access_token=access,
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            expires_in=float(expires_in) if isinstance(expires_in, int | float) else None,
            scope=str(body["scope"]) if body.get("scope") else None,
            token_type=str(body.get("token_type") or "Bearer"),
            received_at=time.time(),
        )

    # --- grants --------------------------------------------------------------------------
    def authorize_url(self, *, state: str, code_challenge: str, redirect_uri: str) -> str:
        """The browser URL for the authorization code grant with PKCE S256."""
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.settings.client_id,
                "redirect_uri": redirect_uri,
                "scope": self.settings.scopes,
                "state": state,
                "code_challenge": code_challenge,
                "code_challenge_method": "S256",
            }
        )
        separator = "&" if "?" in self.settings.authorize_url else "?"
        return f"{self.settings.authorize_url}{separator}{query}"

    def exchange_code(self, *, code: str, code_verifier: str, redirect_uri: str) -> TokenResponse:
        return self._token(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": code_verifier,
            }
        )

    def device_authorize(self) -> DeviceAuthorization:
        body = self._post_form(
            self.settings.device_authorization_url, {"scope": self.settings.scopes}
        )
        try:
            return DeviceAuthorization(
                device_code=str(body["device_code"]),
                user_code=str(body["user_code"]),
                verification_uri=str(body.get("verification_uri") or body["verification_url"]),
                verification_uri_complete=body.get("verification_uri_complete"),
                expires_in=float(body.get("expires_in") or 600),
                interval=float(body.get("interval") or 5),
            )
        except KeyError as exc:
            raise OAuthServerError(
                f"device authorization answer lacks {exc.args[0]}", error="invalid_response"
            ) from None

    def poll_device(self, device_code: str) -> TokenResponse:
        """One token request; `authorization_pending` / `slow_down` arrive as OAuthServerError."""
        return self._token({"grant_type": DEVICE_GRANT, "device_code": device_code})

    def refresh(self, refresh_token: str) -> TokenResponse:
        return self._token({"grant_type": "refresh_token", "refresh_token": refresh_token})

    def revoke(self, token: str, token_type_hint: str) -> bool:
        """RFC 7009; False when the server has no (or no usable) revocation endpoint."""
        data = {"token": token, "token_type_hint": token_type_hint}
        auth = self._client_auth(data)
        response = self._send("POST", self.settings.revoke_url, data=data, auth=auth)
        if response.status_code == 200:
            return True
        if response.status_code in (400, 404, 405, 501):
            return False  # not supported here (RFC 7009 unsupported_token_type, or no endpoint)
        if response.status_code == 429 or response.status_code >= 500:
            raise OAuthTransientError(
                f"revocation answered {response.status_code}",
                error="server_error",
                status_code=response.status_code,
            )
        return False

    def fetch_jwks(self) -> dict[str, Any]:
        response = self._send("GET", self.settings.jwks_url, headers={"Accept": "application/json"})
        body = _json(response)
        if response.status_code != 200 or not isinstance(body.get("keys"), list):
            raise OAuthTransientError(
                f"JWKS {self.settings.jwks_url} answered {response.status_code}",
                error="jwks_unavailable",
                status_code=response.status_code,
            )
        return body
