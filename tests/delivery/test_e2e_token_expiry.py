"""Issue 9, done when 7: 10 s access tokens with the DEFAULT refresh settings (beat every 30 s,
margin 0.25, HTTP timeout 10 s), rotating refresh tokens, two minutes of four real `celery
worker` processes and a real `celery beat` against the sandbox's 4 requests/s. Before the fix a
worker sent the token it knew had expired: a 401 and a 26-28 s stall at every expiry (214 x 401
for 2,000 leads). Now the workers ask for the refresh before expiry and wait for the new token
instead of sending: at most one 401 (the sandbox counts them), none refused for the rate, every
contact written once, no refresh token rejected."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis

from tests.fixtures.delivery import DEFAULT_RATE_ENV, Fleet
from tests.fixtures.fleet import RateSampler, people
from worker.account import Account
from worker.auth.access import token_state
from worker.base.keys import Keys
from worker.base.settings import Settings

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SANDBOX_RATE_PER_S = 4.0
LEADS = 440  # consent leads, one call each: about two minutes at 3.7/s
WORKERS = 4
DEFAULTS = {  # the fixture's fast test values put back to leadsync's own defaults
    name: str(Settings.model_fields[field].default)
    for name, field in (("LEADSYNC_HTTP_TIMEOUT_S", "http_timeout_s"),
                        ("LEADSYNC_REFRESH_LOCK_TTL_S", "refresh_lock_ttl_s"),
                        ("LEADSYNC_REFRESH_INTERVAL_S", "refresh_interval_s"),
                        ("LEADSYNC_REFRESH_MARGIN_RATIO", "refresh_margin_ratio"))
}


def test_ten_second_tokens_two_minutes_four_workers_no_expired_token_sent(
    fleet: Callable[..., Fleet], rate_sampler: Callable[..., RateSampler],
    redis_client: redis.Redis,
) -> None:
    run = fleet(rate_limit_per_s=SANDBOX_RATE_PER_S, access_token_lifetime_s=10,
                refresh_tokens="rotating", settings_env={**DEFAULT_RATE_ENV, **DEFAULTS})
    names = [f"x{n}" for n in range(WORKERS)]
    for name in names:
        run.start_worker(name, concurrency=2)
    run.start_beat()
    run.wait_ready(*names)
    sandbox = run.stack.sandbox
    before = sandbox.stats()  # start-up: the stored token has long expired by now

    sampler = rate_sampler(sandbox)
    started = time.monotonic()
    lead_ids = run.push_raw(people(LEADS, tag="expiry", consent=True))
    run.wait_settled(lead_ids, 300)
    elapsed = time.monotonic() - started
    sampler.stop()

    stats = sandbox.stats()
    rate, seconds, requests = sampler.steady_rate(LEADS // 10, LEADS * 9 // 10)
    unauthorized = stats["unauthorized_401"] - before["unauthorized_401"]
    print(f"\nEXPIRY {elapsed:.0f} s, {WORKERS} workers x 2, 10 s tokens, default refresh "
          f"settings: 401 {unauthorized}, refreshes {stats['refreshes']}, invalid_grant "
          f"{stats['invalid_grant']}, 429 {stats['throttled_429']}, rate share "
          f"{rate / SANDBOX_RATE_PER_S:.3f} steady ({requests} requests in {seconds:.1f} s)")
    assert unauthorized <= 1
    assert stats["invalid_grant"] == 0
    # A 429 on a busy machine (grant-to-arrival jitter) is a wait, never a spent retry: the
    # share and 429 count are bench_fleet.py's figures, not this test's.
    assert stats["throttled_429"]["quota_exceeded"] == 0
    ledger = Account(run.stack.settings, redis_client).ledger
    assert [i for i in lead_ids if int(ledger.get(i).get("attempts", 0) or 0)] == []
    assert stats["contacts"]["count"] == LEADS
    assert stats["sign_up_form"]["max_calls_per_contact"] == 1
    assert stats["refreshes"] >= elapsed / 10  # the 10 s token was kept fresh all along
    assert redis_client.hlen(Keys().dead_letters) == 0
    assert token_state(Account(run.stack.settings, redis_client).tokens) == "ok"
