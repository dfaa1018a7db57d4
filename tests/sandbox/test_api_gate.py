"""Facts 10, 11 and 19: bearer tokens and scope, per-client rate limits and the daily quota,
the three error shapes and injected 5xx answers, dropped connections and latency."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import requests

from tests.fixtures.sandbox import CC
from worker.sandbox.limits import DailyQuota, WindowLimiter

UNAUTHORIZED = {"error_key": "unauthorized", "error_message": "Unauthorized"}
THROTTLED = {"error_key": "throttled", "error_message": "Too Many Requests"}
QUOTA = {"error_key": "quota_exceeded", "error_message": "Limit Exceeded"}


def test_fact_10_missing_bad_expired_or_revoked_token_is_401(cc: CC) -> None:
    good = cc.access_token
    for token in ("", "not-a-jwt", good[:-4] + "AAAA"):
        answer = cc.call("GET", "/contacts", token=token)
        assert answer.status_code == 401 and answer.json() == UNAUTHORIZED
        assert answer.headers["WWW-Authenticate"] == "Bearer realm=api.cc.email"
        assert len(answer.content) == 59  # the observed Content-Length
    cc.http.post(cc.env["LEADSYNC_REVOKE_URL"], data={"token": good}, auth=cc.basic(),
                 timeout=10)
    assert cc.call("GET", "/contacts", token=good).status_code == 401
    assert cc.server.stats()["unauthorized_401"] == 4


def test_fact_10_token_without_contact_data_scope_is_403_array(cc: CC) -> None:
    cc.authorize(scope="campaign_data offline_access")
    answer = cc.call("GET", "/contacts")
    assert answer.status_code == 403
    body = answer.json()
    assert isinstance(body, list) and set(body[0]) == {"error_key", "error_message"}


def test_fact_11_more_than_4_per_second_is_throttled(make_cc: Callable[..., CC]) -> None:
    cc = make_cc()
    answers = [cc.call("GET", "/contact_lists") for _ in range(8)]
    codes = [a.status_code for a in answers]
    assert codes.count(200) >= 4 and 429 in codes
    throttled = next(a for a in answers if a.status_code == 429)
    assert throttled.json() == THROTTLED
    assert not any(h.lower().startswith(("retry-after", "x-ratelimit"))
                   for h in throttled.headers)
    # The limit is per client_id, across its tokens: a second token shares it.
    second = CC(cc.server)
    second.authorize()
    assert second.call("GET", "/contact_lists").status_code in (200, 429)
    assert cc.server.stats()["throttled_429"]["throttled"] >= 1


def test_fact_11_sliding_window_never_admits_more_than_n_in_any_second() -> None:
    sliding, fixed = WindowLimiter(4, "sliding"), WindowLimiter(4, "fixed")
    # Four at the end of one second, four more just after the boundary.
    times = [10.90, 10.92, 10.94, 10.96, 11.01, 11.02, 11.03, 11.04]
    assert [sliding.admit("c", t) for t in times] == [True] * 4 + [False] * 4
    assert [fixed.admit("c", t) for t in times] == [True] * 8  # the fixed reading allows 8
    assert sliding.admit("c", 11.91)  # a full second after the first
    assert WindowLimiter(0).admit("c", 1.0)  # 0 = off


def test_fact_11_daily_quota_until_midnight_utc(make_cc: Callable[..., CC]) -> None:
    cc = make_cc(rate_limit_per_s=0, daily_quota=3)
    assert [cc.call("GET", "/contact_lists").status_code for _ in range(3)] == [200] * 3
    over = cc.call("GET", "/contact_lists")
    assert over.status_code == 429 and over.json() == QUOTA
    assert "Retry-After" not in over.headers
    now = datetime.fromtimestamp(cc.server.state.clock.now(), UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    cc.server.advance_clock((midnight - now).total_seconds() - 2)
    assert cc.call("GET", "/contact_lists").status_code == 429  # still the same UTC day
    cc.server.advance_clock(3)
    assert cc.call("GET", "/contact_lists").status_code == 200


def test_fact_11_default_quota_is_10000_a_day(make_cc: Callable[..., CC]) -> None:
    cc = make_cc(rate_limit_per_s=0)
    cc.server.set_faults(quota_used=9_999)
    assert cc.call("GET", "/contact_lists").status_code == 200
    assert cc.call("GET", "/contact_lists").json() == QUOTA
    quota = DailyQuota(10_000)
    assert quota.per_day == 10_000 and quota.used("x", 0.0) == 0


def test_fact_11_injected_burst_of_throttled_answers(cc: CC) -> None:
    cc.server.set_faults(throttle_burst=3)
    codes = [cc.call("GET", "/contact_lists").status_code for _ in range(4)]
    assert codes == [429, 429, 429, 200]


def test_fact_19_three_error_shapes(cc: CC) -> None:
    array = cc.call("GET", "/contacts/not-a-uuid")
    assert array.status_code == 404 and isinstance(array.json(), list)
    assert cc.call("GET", "/contacts", token="x").json() == UNAUTHORIZED  # object
    oauth = cc.refresh("unknown")
    assert set(oauth.json()) == {"error", "error_description"}


def test_fact_19_injected_5xx_on_api_and_token_endpoint(cc: CC) -> None:
    cc.server.set_faults(fail_rate=1.0)
    api = cc.call("GET", "/contact_lists")
    assert api.status_code in (500, 503) and isinstance(api.json(), list)
    assert api.json()[0]["error_key"] in ("server_error", "service_unavailable")
    token = cc.refresh()
    assert token.status_code in (500, 503) and "error" in token.json()
    cc.server.set_faults(fail_rate=0)
    assert cc.call("GET", "/contact_lists").status_code == 200
    assert sum(cc.server.stats()["faults_injected"].values()) == 2


def test_fact_19_dropped_connections_and_latency(cc: CC) -> None:
    cc.server.set_faults(drop_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        cc.call("GET", "/contact_lists")
    cc.server.set_faults(drop_rate=0.0, latency_ms=300)
    started = time.monotonic()
    assert cc.call("GET", "/contact_lists").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_faults_over_http_change_a_running_sandbox(cc: CC) -> None:
    url = f"{cc.server.url}/_sandbox/faults"
    answer = requests.post(url, json={"fail_rate": 1.0}, timeout=10)
    assert answer.status_code == 200 and answer.json()["faults"]["fail_rate"] == 1.0
    assert cc.call("GET", "/contact_lists").status_code in (500, 503)
    bad = requests.post(url, json={"fail_rate": 2}, timeout=10)
    assert bad.status_code == 400
    requests.post(url, json={"fail_rate": 0, "revoke_refresh_tokens": True}, timeout=10)
    assert cc.refresh().status_code == 400
