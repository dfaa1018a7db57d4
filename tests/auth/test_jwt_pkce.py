"""PKCE against RFC 7636's own example, and JWT verification against the sandbox's published
keys (JWKS over HTTP, key rotation, a stranger's key)."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fixtures.tokens import sandbox_settings
from worker.auth.jwt_verify import JwksCache, verify_access_token
from worker.auth.oauth_client import OAuthClient
from worker.auth.pkce import challenge_s256, make_state, make_verifier, same_state
from worker.base.errors import TokenVerificationError
from worker.base.settings import Settings
from worker.sandbox import SandboxServer


def test_pkce_s256_matches_rfc7636_appendix_b() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert challenge_s256(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    fresh = make_verifier()
    assert 43 <= len(fresh) <= 128 and fresh != make_verifier()
    with pytest.raises(ValueError):
        challenge_s256("too-short")
    state = make_state()
    assert same_state(state, state) and not same_state(state, state + "x")
    assert not same_state(state, None)


def _token(sandbox: SandboxServer, **overrides: Any) -> str:
    """A JWT signed with the sandbox's current signing key, claims as Constant Contact's."""
    now = time.time()
    config = sandbox.config
    claims = {"iss": config.issuer, "aud": config.audience, "iat": int(now),
              "exp": int(now + 600), "sub": "owner", "cid": config.client_id,
              "platform_user_id": "pu-1"}
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    with sandbox.state.lock:
        return sandbox.state.keys.sign(claims)


def _cache(settings: Settings, **options: Any) -> JwksCache:
    """A JWKS cache fetching the sandbox's published keys over HTTP."""
    return JwksCache(OAuthClient(settings).fetch_jwks, **options)


def test_claims_checked(make_settings: Any, sandbox: SandboxServer) -> None:
    settings = sandbox_settings(make_settings, sandbox)
    cache = _cache(settings)
    assert verify_access_token(settings, _token(sandbox), cache=cache)["sub"] == "owner"
    # exp 30 s ago is inside the 60 s leeway; 120 s ago is not.
    verify_access_token(settings, _token(sandbox, exp=int(time.time() - 30)), cache=cache)
    bad: dict[str, dict[str, Any]] = {
        "expired": {"exp": int(time.time() - 120)},
        "audience": {"aud": "https://elsewhere"},
        "issuer": {"iss": "https://evil"},
        "cid": {"cid": "other-client"},
        "platform_user_id": {"platform_user_id": None},
    }
    for name, change in bad.items():
        token = _token(sandbox, **change)
        with pytest.raises(TokenVerificationError) as exc:
            verify_access_token(settings, token, cache=cache)
        assert token not in str(exc.value), name
    forged = _token(sandbox)[:-6] + "AAAAAA"
    with pytest.raises(TokenVerificationError):
        verify_access_token(settings, forged, cache=cache)
    with pytest.raises(TokenVerificationError):
        verify_access_token(settings, "not-a-jwt", cache=cache)


def test_unknown_kid_refetches_jwks_once(make_settings: Any, sandbox: SandboxServer) -> None:
    settings = sandbox_settings(make_settings, sandbox)
    cache = _cache(settings, min_refetch_s=0)
    verify_access_token(settings, _token(sandbox), cache=cache)
    assert cache.fetch_count == 1
    sandbox.rotate_keys()  # a new signing key the cache has never seen
    verify_access_token(settings, _token(sandbox), cache=cache)
    assert cache.fetch_count == 2
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    unknown = jwt.encode({"exp": 1}, stranger, algorithm="RS256", headers={"kid": "nope"})
    with pytest.raises(TokenVerificationError, match="unknown key id"):
        verify_access_token(settings, unknown, cache=cache)
    assert cache.fetch_count == 3  # one re-fetch for the unknown kid, then refused
