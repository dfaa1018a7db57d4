"""Facts 5-8: refresh-token modes and expiry, old access tokens after a refresh, the token
endpoint's 1 request/s, and RS256 JWTs with a two-key JWKS that rotates."""

from __future__ import annotations

from collections.abc import Callable

import jwt
import requests

from tests.fixtures.sandbox import CC
from worker.auth.jwt_verify import verify_access_token
from worker.base.settings import CC_ISSUER, Settings

DAY = 86_400.0
BAD_REFRESH = {"error": "invalid_grant",
               "error_description": "The refresh token is invalid or expired."}


def test_fact_05_rotating_refresh_token_kills_previous(cc: CC) -> None:
    first = cc.authorize()["refresh_token"]
    second = cc.refresh().json()["refresh_token"]
    third = cc.refresh().json()["refresh_token"]
    assert len({first, second, third}) == 3
    for old in (first, second):
        reused = cc.refresh(old)
        assert reused.status_code == 400 and reused.json() == BAD_REFRESH
    assert cc.refresh(third).status_code == 200
    assert cc.server.stats()["invalid_grant"] == 2
    assert cc.server.stats()["refresh_token_generation"] == 4


def test_fact_05_rotating_grace_window_answers_a_new_pair_for_the_previous_token(
        make_cc: Callable[..., CC]) -> None:
    """Okta's rotation grace period: the token just rotated out still works for a while, and
    using it gets new tokens (a new pair); the pair whose answer was lost dies."""
    cc = make_cc(refresh_grace_s=30)
    first = cc.refresh_token
    lost = cc.refresh().json()  # the answer a crashed client never stored
    cc.server.advance_clock(1.0)  # past the token endpoint's 1 request/s
    inside = cc.refresh(first)  # 1 s into the 30 s grace
    assert inside.status_code == 200
    pair = inside.json()
    assert pair["refresh_token"] not in (first, lost["refresh_token"])
    assert pair["access_token"] != lost["access_token"]
    assert cc.call("GET", "/contact_lists", token=pair["access_token"]).status_code == 200
    cc.server.advance_clock(1.0)
    assert cc.refresh(lost["refresh_token"]).json() == BAD_REFRESH  # only one child lives
    cc.server.advance_clock(1.0)
    assert cc.refresh(pair["refresh_token"]).status_code == 200  # the recovered chain goes on
    assert cc.server.stats()["refresh_grace_reuses"] == 1
    cc.server.advance_clock(30)  # the grace window never grows with reuse
    assert cc.refresh(first).json() == BAD_REFRESH


def test_fact_05_without_grace_the_previous_token_dies_at_once(cc: CC) -> None:
    first = cc.refresh_token
    assert cc.refresh().status_code == 200
    cc.server.advance_clock(1.0)
    assert cc.refresh(first).json() == BAD_REFRESH
    assert cc.server.stats()["refresh_grace_reuses"] == 0


def test_fact_05_grace_period_is_set_at_run_time_through_the_control_api(cc: CC) -> None:
    url = cc.server.url + "/_sandbox/faults"
    answer = requests.post(url, json={"refresh_grace_s": 30}, timeout=10)
    assert answer.status_code == 200 and answer.json()["faults"]["refresh_grace_s"] == 30
    first = cc.refresh_token
    assert cc.refresh().status_code == 200
    cc.server.advance_clock(1.0)
    assert cc.refresh(first).status_code == 200
    too_long = requests.post(url, json={"refresh_grace_s": 61}, timeout=10)
    assert too_long.status_code == 400 and "refresh_grace_s" in too_long.text  # Okta: 0-60 s


def test_fact_05_long_lived_returns_the_same_token(make_cc: Callable[..., CC]) -> None:
    cc = make_cc(refresh_tokens="long-lived")
    token = cc.refresh_token
    answers = [cc.refresh(token).json() for _ in range(3)]
    assert all(a["refresh_token"] == token for a in answers)
    assert len({a["access_token"] for a in answers}) == 3


def test_fact_05_refresh_tokens_expire_after_180_days(make_cc: Callable[..., CC]) -> None:
    rotating = make_cc()
    rotating.server.advance_clock(180 * DAY)
    assert rotating.refresh().json() == BAD_REFRESH
    long_lived = make_cc(refresh_tokens="long-lived")
    for _ in range(3):  # used within 180 days each time: stays active for a year and more
        long_lived.server.advance_clock(150 * DAY)
        assert long_lived.refresh().status_code == 200
    long_lived.server.advance_clock(181 * DAY)
    assert long_lived.refresh().json() == BAD_REFRESH


def test_fact_05_access_token_expires_after_24_hours(cc: CC) -> None:
    assert cc.call("GET", "/contact_lists").status_code == 200
    cc.server.advance_clock(DAY - 5)
    assert cc.call("GET", "/contact_lists").status_code == 200
    cc.server.advance_clock(10)
    assert cc.call("GET", "/contact_lists").status_code == 401


def test_fact_06_old_access_token_survives_refresh_by_default(cc: CC) -> None:
    old = cc.access_token
    assert cc.refresh().status_code == 200
    assert cc.call("GET", "/contact_lists", token=old).status_code == 200


def test_fact_06_old_access_token_can_be_revoked_on_refresh(make_cc: Callable[..., CC]) -> None:
    cc = make_cc(revoke_access_on_refresh=True, rate_limit_per_s=0)
    old = cc.access_token
    assert cc.refresh().status_code == 200
    assert cc.call("GET", "/contact_lists", token=old).status_code == 401
    assert cc.call("GET", "/contact_lists").status_code == 200


def test_fact_07_token_endpoint_allows_one_request_per_second(
        make_cc: Callable[..., CC]) -> None:
    cc = make_cc(authorize=False, token_rate_limit_per_s=1)
    cc.authorize()
    url = cc.env["LEADSYNC_TOKEN_URL"]
    data = {"grant_type": "refresh_token", "refresh_token": cc.refresh_token or ""}
    cc.server.advance_clock(1.0)
    first = requests.post(url, data=data, auth=cc.basic(), timeout=10)
    second = requests.post(url, data={**data, "refresh_token": first.json()["refresh_token"]},
                           auth=cc.basic(), timeout=10)
    assert first.status_code == 200
    assert second.status_code == 429 and second.json()["error"] == "too_many_requests"
    assert "error_description" in second.json()
    cc.server.advance_clock(1.0)
    third = requests.post(url, data={**data, "refresh_token": first.json()["refresh_token"]},
                          auth=cc.basic(), timeout=10)
    assert third.status_code == 200  # the throttled call did not spend the refresh token


def test_fact_08_access_token_is_rs256_jwt_with_cc_claims(cc: CC) -> None:
    header = jwt.get_unverified_header(cc.access_token)
    assert header["alg"] == "RS256" and header["kid"]
    jwks = requests.get(cc.env["LEADSYNC_JWKS_URL"], timeout=10).json()
    assert len(jwks["keys"]) == 2
    for key in jwks["keys"]:
        assert {"kty", "alg", "kid", "use", "n", "e"} <= set(key)
        assert key["kty"] == "RSA" and key["use"] == "sig" and key["alg"] == "RS256"
    signing = jwt.PyJWKClient(cc.env["LEADSYNC_JWKS_URL"]).get_signing_key_from_jwt(
        cc.access_token)
    claims = jwt.decode(cc.access_token, signing.key, algorithms=["RS256"],
                        audience="https://api.cc.email/v3", issuer=CC_ISSUER)
    assert claims["exp"] - claims["iat"] == 86_400
    assert claims["cid"] == cc.env["LEADSYNC_CLIENT_ID"]
    assert claims["platform_user_id"] and claims["sub"] and claims["jti"]
    assert claims["scp"] == ["contact_data", "offline_access"]


def test_fact_08_worker_verification_accepts_sandbox_tokens_unchanged(cc: CC) -> None:
    env = {k.removeprefix("LEADSYNC_").lower(): v for k, v in cc.env.items()}
    settings = Settings(_env_file=None, **env)  # iss/aud stay the real Constant Contact values
    claims = verify_access_token(settings, cc.access_token)
    assert claims["cid"] == settings.client_id


def test_fact_08_key_rotation_new_kid_signs_and_old_key_stays_published(cc: CC) -> None:
    before = jwt.get_unverified_header(cc.access_token)["kid"]
    kids = cc.server.rotate_keys()
    published = {k["kid"] for k in requests.get(cc.env["LEADSYNC_JWKS_URL"],
                                                timeout=10).json()["keys"]}
    assert published == set(kids) and before in published
    cc.refresh()
    after = jwt.get_unverified_header(cc.access_token)["kid"]
    assert after == kids[0] != before
    old_token = cc.access_token
    cc.server.rotate_keys()  # `after` is still published (previous signing key)
    assert cc.call("GET", "/contact_lists", token=old_token).status_code == 200
    cc.server.rotate_keys()  # now it is gone: the API can no longer verify it
    assert cc.call("GET", "/contact_lists", token=old_token).status_code == 401
