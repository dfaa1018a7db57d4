"""PKCE against RFC 7636's own example, and JWT verification with keys made in the test."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from tests.fixtures.tokens import FakeAuthServer
from worker.auth.jwt_verify import JwksCache, verify_access_token
from worker.auth.pkce import challenge_s256, make_state, make_verifier, same_state
from worker.errors import TokenVerificationError


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


def _token(fake: FakeAuthServer, **overrides: Any) -> str:
    now = time.time()
    claims = {"iss": fake.issuer, "aud": "https://api.cc.email/v3", "iat": int(now),
              "exp": int(now + 600), "sub": "owner", "cid": "test-client-id",
              "platform_user_id": "pu-1"}
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, fake.key, algorithm="RS256", headers={"kid": fake.kid})


def test_claims_checked(auth_settings: Any, fake_auth: FakeAuthServer) -> None:
    cache = JwksCache(lambda: fake_auth.jwks())
    assert verify_access_token(auth_settings, _token(fake_auth), cache=cache)["sub"] == "owner"
    # exp 30 s ago is inside the 60 s leeway; 120 s ago is not.
    verify_access_token(auth_settings, _token(fake_auth, exp=int(time.time() - 30)), cache=cache)
    bad = {
        "expired": {"exp": int(time.time() - 120)},
        "audience": {"aud": "https://elsewhere"},
        "issuer": {"iss": "https://evil"},
        "cid": {"cid": "other-client"},
        "platform_user_id": {"platform_user_id": None},
    }
    for name, change in bad.items():
        token = _token(fake_auth, **change)
        with pytest.raises(TokenVerificationError) as exc:
            verify_access_token(auth_settings, token, cache=cache)
        assert token not in str(exc.value), name
    forged = _token(fake_auth)[:-6] + "AAAAAA"
    with pytest.raises(TokenVerificationError):
        verify_access_token(auth_settings, forged, cache=cache)
    with pytest.raises(TokenVerificationError):
        verify_access_token(auth_settings, "not-a-jwt", cache=cache)


def test_unknown_kid_refetches_jwks_once(auth_settings: Any, fake_auth: FakeAuthServer) -> None:
    cache = JwksCache(lambda: fake_auth.jwks(), min_refetch_s=0)
    verify_access_token(auth_settings, _token(fake_auth), cache=cache)
    assert cache.fetch_count == 1
    fake_auth.rotate_signing_key()  # the server rotated its keys
    verify_access_token(auth_settings, _token(fake_auth), cache=cache)
    assert cache.fetch_count == 2
    unknown = jwt.encode({"exp": 1}, fake_auth.key, algorithm="RS256", headers={"kid": "nope"})
    with pytest.raises(TokenVerificationError, match="unknown key id"):
        verify_access_token(auth_settings, unknown, cache=cache)
