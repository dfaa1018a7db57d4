"""HTTP side of the authorization server: /authorize, /token, /device/authorize, /revoke,
the JWKS, the consent and device pages. Token logic lives in tokens.py."""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlparse

from worker.sandbox import consent
from worker.sandbox.http import Reply, Request, html_reply, json_reply, oauth_error, redirect
from worker.sandbox.tokens import OAuthFailure

if TYPE_CHECKING:
    from worker.sandbox.state import SandboxState

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
KNOWN_SCOPES = {"contact_data", "campaign_data", "account_read", "account_update",
                "offline_access", "billing_data", "openid", "profile"}
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
NO_SCOPE = ("The authorization server resource does not have any configured default scopes, "
            "'scope' must be provided.")


def _params(request: Request) -> dict[str, str]:
    """Query string and form body together (support's template uses the query string)."""
    return {**request.query, **request.form()}


def _basic(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ("", "")
    client_id, _, secret = decoded.partition(":")
    return client_id, secret


class OAuthEndpoints:
    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.config = state.config
        self.pending: dict[str, dict[str, Any]] = {}  # consent requests awaiting a person

    # --- client authentication ------------------------------------------------------------
    def _client(self, request: Request, params: dict[str, str]) -> tuple[str, bool]:
        """(client_id, authenticated with the secret); OAuthFailure 401 when wrong."""
        basic = _basic(request)
        if basic is not None:
            client_id, secret = basic
        else:
            client_id, secret = params.get("client_id", ""), params.get("client_secret", "")
        if client_id != self.config.client_id:
            raise OAuthFailure(401, "invalid_client", "Invalid value for 'client_id' parameter.")
        if basic is not None or secret:
            if not secrets.compare_digest(secret, self.config.client_secret):
                raise OAuthFailure(401, "invalid_client", "The client secret supplied for a "
                                   "confidential client is invalid.")
            return client_id, True
        return client_id, False

    @staticmethod
    def _fail(exc: OAuthFailure) -> Reply:
        headers = [("WWW-Authenticate", 'Basic realm="sandbox"')] if exc.status == 401 else []
        return oauth_error(exc.status, exc.error, exc.description, headers)

    def _scopes(self, raw: str | None) -> list[str]:
        scopes = [part for part in (raw or "").replace("+", " ").split() if part]
        if not scopes:
            raise OAuthFailure(400, "invalid_scope", NO_SCOPE)
        unknown = [s for s in scopes if s not in KNOWN_SCOPES | set(self.config.extra_scopes)]
        if unknown:
            raise OAuthFailure(400, "invalid_scope", "One or more scopes are not configured "
                               f"for the authorization server resource: {' '.join(unknown)}")
        return scopes

    # --- token endpoint -------------------------------------------------------------------
    def token(self, request: Request) -> Reply:
        stats = self.state.stats
        stats.token_requests += 1
        if request.method != "POST":
            return oauth_error(405, "invalid_request", "The token endpoint accepts POST only.",
                               [("Allow", "POST")])
        params = _params(request)
        now = self.state.clock.now()
        try:
            client_id, authenticated = self._client(request, params)
            if not self.state.token_limiter.admit(client_id, now):
                stats.token_throttled += 1
                return oauth_error(429, "too_many_requests",
                                   "API call exceeded rate limit due to too many requests.")
            answer = self._grant(params, client_id, authenticated, now)
        except OAuthFailure as exc:
            if exc.error == "invalid_grant":
                stats.invalid_grant += 1
            return self._fail(exc)
        return json_reply(200, answer, [("Cache-Control", "no-store"), ("Pragma", "no-cache")])

    def _grant(self, params: dict[str, str], client_id: str, authenticated: bool,
               now: float) -> dict[str, Any]:
        tokens = self.state.tokens
        grant_type = params.get("grant_type", "")
        if grant_type == "authorization_code":
            if not params.get("code"):
                raise OAuthFailure(400, "invalid_request", "The 'code' parameter is required.")
            return tokens.redeem_code(params["code"], client_id, params.get("redirect_uri"),
                                      params.get("code_verifier"), authenticated, now)
        if grant_type == "refresh_token":
            if not params.get("refresh_token"):
                raise OAuthFailure(400, "invalid_request",
                                   "The 'refresh_token' parameter is required.")
            answer = tokens.use_refresh(params["refresh_token"], client_id, authenticated, now)
            self.state.stats.refreshes += 1
            return answer
        if grant_type == DEVICE_GRANT:
            if not params.get("device_code"):
                raise OAuthFailure(400, "invalid_request",
                                   "The 'device_code' parameter is required.")
            return tokens.poll_device(params["device_code"], client_id, now)
        if not grant_type:
            raise OAuthFailure(400, "invalid_request", "The 'grant_type' parameter is required.")
        raise OAuthFailure(400, "unsupported_grant_type",
                           f"The grant type '{grant_type[:60]}' is not supported.")

    # --- device authorization -------------------------------------------------------------
    def device_authorize(self, request: Request, base_url: str) -> Reply:
        if request.method != "POST":
            return oauth_error(405, "invalid_request", "POST only.", [("Allow", "POST")])
        params = _params(request)
        now = self.state.clock.now()
        try:
            client_id, _ = self._client(request, params)
            scopes = self._scopes(params.get("scope"))
        except OAuthFailure as exc:
            return self._fail(exc)
        device_code, record = self.state.tokens.new_device(client_id, scopes, now)
        verification = f"{base_url}/activate"
        return json_reply(200, {
            "device_code": device_code,
            "user_code": record.user_code,
            "verification_uri": verification,
            "verification_uri_complete": f"{verification}?user_code={record.user_code}",
            "expires_in": int(self.config.device_expires_in_s),
            "interval": int(record.interval_s),
        }, [("Cache-Control", "no-store")])

    def activate(self, request: Request) -> Reply:
        """The device verification page: GET shows it, POST approves or denies."""
        if request.method == "GET":
            return html_reply(200, consent.device_page(request.query.get("user_code", "")))
        if request.method != "POST":
            return html_reply(405, consent.error_page("GET or POST only."))
        form = request.form()
        user_code = form.get("user_code", "")
        approve = form.get("decision") == "approve"
        decided = self.state.tokens.decide_device(user_code, approve, self.state.clock.now())
        if not decided:
            return html_reply(400, consent.device_page(user_code, "That code is unknown, "
                                                       "expired or already used."))
        if approve:
            return html_reply(200, consent.result_page("Device activated",
                                                       "You can return to your device."))
        return html_reply(200, consent.result_page("Access denied",
                                                   "The device was not given access."))

    # --- authorization code ---------------------------------------------------------------
    def _redirect_allowed(self, uri: str) -> bool:
        if uri in self.config.redirect_uris:
            return True
        if not self.config.loopback_any_port:
            return False
        asked = urlparse(uri)
        if asked.scheme != "http" or asked.hostname is None or asked.fragment:
            return False
        for registered in map(urlparse, self.config.redirect_uris):
            if (registered.scheme == "http" and registered.hostname in LOOPBACK_HOSTS
                    and asked.hostname == registered.hostname
                    and asked.path == registered.path):
                return True
        return False

    def authorize(self, request: Request) -> Reply:
        if request.method != "GET":
            return html_reply(405, consent.error_page("GET only."))
        params = request.query
        if params.get("client_id") != self.config.client_id:
            return html_reply(400, consent.error_page("Invalid value for 'client_id' parameter."))
        redirect_uri = params.get("redirect_uri", "")
        if not self._redirect_allowed(redirect_uri):
            return html_reply(400, consent.error_page(
                "The 'redirect_uri' parameter must be a Login redirect URI in the client app "
                "settings."))
        state = params.get("state")
        try:
            if params.get("response_type") != "code":
                raise OAuthFailure(400, "unsupported_response_type",
                                   "The response type is not supported by the authorization "
                                   "server. Configured response types: [code].")
            scopes = self._scopes(params.get("scope"))
            challenge = params.get("code_challenge")
            method = params.get("code_challenge_method", "plain" if challenge else "")
            if challenge and method not in ("S256", "plain"):
                raise OAuthFailure(400, "invalid_request",
                                   "'code_challenge_method' must be S256 or plain.")
        except OAuthFailure as exc:
            return self._back(redirect_uri, state, error=exc.error,
                              error_description=exc.description)
        ask = {"client_id": self.config.client_id, "redirect_uri": redirect_uri,
               "scopes": scopes, "state": state, "challenge": challenge or None,
               "method": method}
        if self.config.auto_approve:
            return self._approve(ask)
        request_id = secrets.token_urlsafe(16)
        self.pending[request_id] = ask
        return html_reply(200, consent.consent_page(request_id, self.config.client_id, scopes))

    def decision(self, request: Request) -> Reply:
        if request.method != "POST":
            return html_reply(405, consent.error_page("POST only."))
        form = request.form() or dict(parse_qsl(request.query_string))
        ask = self.pending.pop(form.get("request_id", ""), None)
        if ask is None:
            return html_reply(400, consent.error_page("This authorization request is unknown "
                                                      "or was already answered."))
        if form.get("decision") != "approve":
            return self._back(ask["redirect_uri"], ask["state"], error="access_denied",
                              error_description="The resource owner or authorization server "
                              "denied the request.")
        return self._approve(ask)

    def _approve(self, ask: dict[str, Any]) -> Reply:
        code = self.state.tokens.new_code(ask["client_id"], ask["redirect_uri"], ask["scopes"],
                                          ask["challenge"], ask["method"], self.state.clock.now())
        return self._back(ask["redirect_uri"], ask["state"], code=code)

    @staticmethod
    def _back(redirect_uri: str, state: str | None, **values: str) -> Reply:
        if state is not None:
            values["state"] = state
        separator = "&" if "?" in redirect_uri else "?"
        return redirect(f"{redirect_uri}{separator}{urlencode(values)}")

    # --- revoke and keys ------------------------------------------------------------------
    def revoke(self, request: Request) -> Reply:
        if request.method != "POST":
            return oauth_error(405, "invalid_request", "POST only.", [("Allow", "POST")])
        params = _params(request)
        try:
            client_id, _ = self._client(request, params)
        except OAuthFailure as exc:
            return self._fail(exc)
        token = params.get("token")
        if not token:
            return oauth_error(400, "invalid_request", "The 'token' parameter is required.")
        self.state.tokens.revoke(token, client_id, self.state.clock.now())
        return Reply(200, b"", "application/json")

    def jwks(self, request: Request) -> Reply:
        if request.method != "GET":
            return oauth_error(405, "invalid_request", "GET only.", [("Allow", "GET")])
        return json_reply(200, self.state.keys.jwks(), [("Cache-Control", "max-age=300")])
