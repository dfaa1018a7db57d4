"""The authorization server's memory: grants, codes, device codes, refresh and access tokens.

Pure logic on the sandbox clock (`now` is passed in); HTTP lives in oauth.py. Errors are raised
as OAuthFailure carrying the status and the OAuth error object Constant Contact (Okta) sends.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

from worker.sandbox.config import SandboxConfig
from worker.sandbox.keys import KeyRing

BAD_REFRESH = "The refresh token is invalid or expired."
BAD_CODE = "The authorization code is invalid or has expired."
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # no vowels: no words, no 0/O or 1/I confusion


class OAuthFailure(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.status = status
        self.error = error
        self.description = description


@dataclass
class Grant:
    """One authorization (a code, PKCE or device consent) and the tokens issued under it."""

    grant_id: str
    client_id: str
    scopes: list[str]
    public: bool  # PKCE or device: refreshes come without a client secret
    generation: int = 0
    refresh_tokens: list[str] = field(default_factory=list)
    access_tokens: list[str] = field(default_factory=list)


@dataclass
class RefreshToken:
    grant_id: str
    generation: int
    expires_at: float  # 180 days after issue (rotating) or after last use (long-lived)
    dies_at: float | None = None  # set when rotated out (grace) or revoked


@dataclass
class AccessRecord:
    grant_id: str
    client_id: str
    scopes: frozenset[str]
    kid: str
    expires_at: float
    revoked: bool = False


@dataclass
class AuthCode:
    client_id: str
    redirect_uri: str
    scopes: list[str]
    challenge: str | None
    method: str
    expires_at: float
    used: bool = False


@dataclass
class DeviceCode:
    client_id: str
    user_code: str
    scopes: list[str]
    expires_at: float
    interval_s: float
    status: str = "pending"  # pending | approved | denied | consumed
    last_poll: float | None = None


def pkce_matches(verifier: str, challenge: str, method: str) -> bool:
    if method == "plain":
        return secrets.compare_digest(verifier, challenge)
    digest = hashlib.sha256(verifier.encode("ascii", errors="replace")).digest()
    computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return secrets.compare_digest(computed, challenge)


class TokenAuthority:
    def __init__(self, config: SandboxConfig, keys: KeyRing) -> None:
        self.config = config
        self.keys = keys
        self.grants: dict[str, Grant] = {}
        self.refresh: dict[str, RefreshToken] = {}
        self.access: dict[str, AccessRecord] = {}
        self.codes: dict[str, AuthCode] = {}
        self.devices: dict[str, DeviceCode] = {}
        self.user_codes: dict[str, str] = {}  # user_code -> device_code
        self.latest_generation = 0
        self.grace_reuses = 0  # refreshes answered for a rotated-out token inside its grace

    # --- codes -------------------------------------------------------------------------
    def new_code(self, client_id: str, redirect_uri: str, scopes: list[str],
                 challenge: str | None, method: str, now: float) -> str:
        code = secrets.token_urlsafe(32)
        self.codes[code] = AuthCode(client_id, redirect_uri, scopes, challenge, method,
                                    now + self.config.code_lifetime_s)
        return code

    def redeem_code(self, code: str, client_id: str, redirect_uri: str | None,
                    verifier: str | None, authenticated: bool, now: float) -> dict[str, Any]:
        record = self.codes.get(code)
        if record is None or record.used or now >= record.expires_at:
            raise OAuthFailure(400, "invalid_grant", BAD_CODE)
        if record.client_id != client_id:
            raise OAuthFailure(400, "invalid_grant", BAD_CODE)
        if redirect_uri != record.redirect_uri:
            raise OAuthFailure(400, "invalid_grant", "The 'redirect_uri' does not match the "
                               "redirection URI used in the authorization request.")
        if record.challenge is not None:
            if not verifier:
                raise OAuthFailure(400, "invalid_request", "PKCE code verifier is required "
                                   "when the authorization request included a code challenge.")
            if not pkce_matches(verifier, record.challenge, record.method):
                raise OAuthFailure(400, "invalid_grant", "PKCE verification failed.")
        elif not authenticated:
            raise OAuthFailure(401, "invalid_client", "Client authentication failed. Either "
                               "the client or the client credentials are invalid.")
        record.used = True  # single use, even when what follows fails
        return self._issue(Grant(uuid.uuid4().hex, client_id, record.scopes,
                                 public=record.challenge is not None), now)

    # --- device flow (RFC 8628) ----------------------------------------------------------
    def new_device(self, client_id: str, scopes: list[str],
                   now: float) -> tuple[str, DeviceCode]:
        device_code = secrets.token_urlsafe(32)
        while True:
            raw = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(8))
            user_code = f"{raw[:4]}-{raw[4:]}"
            if user_code not in self.user_codes:
                break
        record = DeviceCode(client_id, user_code, scopes, now + self.config.device_expires_in_s,
                            self.config.device_interval_s)
        if self.config.auto_approve:
            record.status = "approved"
        self.devices[device_code] = record
        self.user_codes[user_code] = device_code
        return device_code, record

    def decide_device(self, user_code: str | None, approve: bool, now: float) -> list[str]:
        """Approve (or deny) one pending device request, or all of them; the user codes."""
        decided = []
        for record in self.devices.values():
            if record.status != "pending" or now >= record.expires_at:
                continue
            if user_code is not None and record.user_code != user_code.strip().upper():
                continue
            record.status = "approved" if approve else "denied"
            decided.append(record.user_code)
        return decided

    def poll_device(self, device_code: str, client_id: str, now: float) -> dict[str, Any]:
        record = self.devices.get(device_code)
        if record is None or record.client_id != client_id or record.status == "consumed":
            raise OAuthFailure(400, "invalid_grant", "The device code is invalid or has expired.")
        if now >= record.expires_at:
            raise OAuthFailure(400, "expired_token", "The device code has expired.")
        if record.status == "denied":
            raise OAuthFailure(400, "access_denied", "The resource owner or authorization "
                               "server denied the request.")
        too_fast = record.last_poll is not None and now - record.last_poll < record.interval_s
        record.last_poll = now
        if record.status == "pending" and too_fast:
            record.interval_s += 5.0  # RFC 8628 3.5
            raise OAuthFailure(400, "slow_down", "The client is polling too frequently.")
        if record.status == "pending":
            raise OAuthFailure(400, "authorization_pending",
                               "The device authorization is pending. Please try again later.")
        record.status = "consumed"
        return self._issue(Grant(uuid.uuid4().hex, client_id, record.scopes, public=True), now)

    # --- refresh -------------------------------------------------------------------------
    def use_refresh(self, token: str, client_id: str, authenticated: bool,
                    now: float) -> dict[str, Any]:
        record = self.refresh.get(token)
        if record is None or now >= record.expires_at or (
                record.dies_at is not None and now >= record.dies_at):
            raise OAuthFailure(400, "invalid_grant", BAD_REFRESH)
        grant = self.grants[record.grant_id]
        if grant.client_id != client_id:
            raise OAuthFailure(400, "invalid_grant", BAD_REFRESH)
        if not grant.public and not authenticated:
            raise OAuthFailure(401, "invalid_client", "Client authentication failed. Either "
                               "the client or the client credentials are invalid.")
        if record.dies_at is not None:
            # Reused inside the grace window (Okta: "the previous token remains valid … to allow
            # clients to get the new token"): a whole new pair, as for any refresh. The pair the
            # lost answer carried dies; this token keeps its original window, never a longer one.
            self.grace_reuses += 1
            return self._issue(grant, now, rotated_from=token)
        if self.config.revoke_access_on_refresh:
            for value in grant.access_tokens:
                self.access[value].revoked = True
        if self.config.refresh_tokens == "long-lived":
            record.expires_at = now + self.config.refresh_token_lifetime_s
            return self._answer(grant, now, token)
        return self._issue(grant, now, rotated_from=token)

    def revoke_refresh_tokens(self, now: float, grant_id: str | None = None) -> int:
        """Kill every live refresh token (of one grant, or of all); how many died."""
        killed = 0
        for record in self.refresh.values():
            if grant_id is not None and record.grant_id != grant_id:
                continue
            if record.dies_at is None or record.dies_at > now:
                record.dies_at = now
                killed += 1
        return killed

    def revoke(self, token: str, client_id: str, now: float) -> None:
        """RFC 7009: unknown tokens are not an error."""
        access = self.access.get(token)
        if access is not None and access.client_id == client_id:
            access.revoked = True
        record = self.refresh.get(token)
        if record is not None and self.grants[record.grant_id].client_id == client_id:
            self.revoke_refresh_tokens(now, record.grant_id)

    # --- issuing -------------------------------------------------------------------------
    def _issue(self, grant: Grant, now: float, rotated_from: str | None = None) -> dict[str, Any]:
        self.grants[grant.grant_id] = grant
        refresh: str | None = None
        if "offline_access" in grant.scopes:
            grant.generation += 1
            self.latest_generation = grant.generation
            refresh = secrets.token_urlsafe(32)  # 43 characters: opaque, under 50
            grace_end = now + self.config.refresh_grace_s
            for value in grant.refresh_tokens:
                old = self.refresh[value]
                if old.dies_at is not None and old.dies_at <= now:
                    continue  # already dead
                if value != rotated_from or self.config.refresh_grace_s <= 0:
                    old.dies_at = now
                elif old.dies_at is None:  # first rotation: the grace window starts now
                    old.dies_at = grace_end
            grant.refresh_tokens.append(refresh)
            self.refresh[refresh] = RefreshToken(grant.grant_id, grant.generation,
                                                 now + self.config.refresh_token_lifetime_s)
        return self._answer(grant, now, refresh)

    def _answer(self, grant: Grant, now: float, refresh: str | None) -> dict[str, Any]:
        lifetime = self.config.access_token_lifetime_s
        issued = int(now)
        claims = {
            "ver": 1,
            "jti": f"AT.{secrets.token_urlsafe(24)}",
            "iss": self.config.issuer,
            "aud": self.config.audience,
            "iat": issued,
            "exp": issued + int(lifetime),
            "cid": grant.client_id,
            "uid": grant.grant_id[:20],
            "scp": list(grant.scopes),
            "auth_time": issued,
            "sub": self.config.subject,
            "platform_user_id": self.config.platform_user_id,
        }
        access = self.keys.sign(claims)
        self.access[access] = AccessRecord(grant.grant_id, grant.client_id,
                                           frozenset(grant.scopes), self.keys.signing_kid,
                                           issued + int(lifetime))
        grant.access_tokens.append(access)
        answer: dict[str, Any] = {"token_type": "Bearer", "expires_in": int(lifetime),
                                  "access_token": access, "scope": " ".join(grant.scopes)}
        if refresh is not None:
            answer["refresh_token"] = refresh
        return answer

    def check_access(self, token: str, now: float) -> AccessRecord | None:
        """The record of a usable access token, or None (401)."""
        record = self.access.get(token)
        if record is None or record.revoked or now >= record.expires_at:
            return None
        if record.kid not in self.keys.published_kids():
            return None  # signed by a key rotated out of the JWKS: unverifiable
        return record
