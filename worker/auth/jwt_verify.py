"""Verify access tokens (JWT) before they are stored: signature against the JWKS by `kid`,
`iss`, `aud`, `exp` with leeway, `cid` equal to our client id, and `platform_user_id` present.

The JWKS is cached per process (the Account's `jwks`, worker/account.py) and re-fetched when a
token names an unknown `kid` (Constant Contact rotates keys), at most once a second so a forged
`kid` cannot make us hammer the server.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import jwt
from jwt import PyJWK, PyJWKSet

from worker.auth.oauth_client import OAuthClient
from worker.base.errors import TokenVerificationError
from worker.base.settings import Settings

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384"]
REQUIRED_CLAIMS = ["exp", "iss", "aud"]


class JwksCache:
    """Keys by `kid`; fresh for `max_age_s`, re-fetched on an unknown `kid`."""

    def __init__(
        self,
        fetch: Callable[[], dict[str, Any]],
        *,
        max_age_s: float = 3600.0,
        min_refetch_s: float = 1.0,
    ) -> None:
        self._fetch = fetch
        self.max_age_s = max_age_s
        self.min_refetch_s = min_refetch_s
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at = 0.0
        self._lock = threading.Lock()
        self.fetch_count = 0

    def _load(self) -> None:
        try:
            keyset = PyJWKSet.from_dict(self._fetch())
        except jwt.PyJWKSetError as exc:
            raise TokenVerificationError(f"JWKS has no usable key: {exc}") from None
        self._keys = {str(key.key_id or ""): key for key in keyset.keys}
        self._fetched_at = time.monotonic()
        self.fetch_count += 1

    def warm(self) -> None:
        """Fetch now if stale: done before a refresh so a JWKS outage fails before the
        rotating refresh token is spent."""
        with self._lock:
            if not self._keys or time.monotonic() - self._fetched_at > self.max_age_s:
                self._load()

    def key_for(self, kid: str | None) -> PyJWK:
        with self._lock:
            age = time.monotonic() - self._fetched_at
            if not self._keys or age > self.max_age_s:
                self._load()
            elif kid is not None and kid not in self._keys and age >= self.min_refetch_s:
                self._load()  # the server rotated its keys
            if kid is None and len(self._keys) == 1:
                return next(iter(self._keys.values()))
            key = self._keys.get(kid or "")
        if key is None:
            raise TokenVerificationError(f"access token signed with unknown key id {kid!r}")
        return key


def jwks_cache(settings: Settings) -> JwksCache:
    """A new cache for `settings.jwks_url` (keep it: the Account holds the process's one)."""
    return JwksCache(OAuthClient(settings).fetch_jwks)


def verify_access_token(
    settings: Settings, token: str, *, cache: JwksCache | None = None
) -> dict[str, Any]:
    """The verified claims, or TokenVerificationError (whose message never holds the token).
    Without `cache`, the JWKS is fetched for this call alone (one-shot commands)."""
    cache = cache or jwks_cache(settings)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise TokenVerificationError(f"access token is not a JWT: {exc}") from None
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise TokenVerificationError(f"access token uses disallowed algorithm {alg!r}")
    key = cache.key_for(header.get("kid"))
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=[alg],
            audience=settings.token_audience,
            issuer=settings.token_issuer,
            leeway=settings.jwt_leeway_s,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.InvalidTokenError as exc:
        raise TokenVerificationError(f"access token failed verification: {exc}") from None
    client_id = claims.get("cid", claims.get("client_id"))
    if client_id != settings.client_id:
        raise TokenVerificationError("access token was issued to another client (cid mismatch)")
    if not claims.get("platform_user_id"):
        raise TokenVerificationError(
            "access token has no platform_user_id: the login is not linked to an account"
        )
    return claims
