"""Issue 4, done when 2, with the threads pool: 4 worker processes x 4 threads share one rate
limit against a sandbox that admits 4 requests in any sliding second. Zero 429 answers, and the
share of the allowed rate used is measured over the steady part of the run (from 10 % to 90 %
of the requests admitted), so neither the start-up ramp nor the tail dilutes it."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.fixtures.delivery import DEFAULT_RATE_ENV, Fleet
from tests.fixtures.fleet import RateSampler, people, start_pool_worker

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SANDBOX_RATE_PER_S = 4.0
LEADS = 240  # consent leads: one sign_up_form call each, ~65 s at 3.7/s


def test_four_thread_pool_workers_use_the_rate_without_a_429(
    fleet: Callable[..., Fleet], rate_sampler: Callable[..., RateSampler]
) -> None:
    run = fleet(rate_limit_per_s=SANDBOX_RATE_PER_S,
                settings_env=DEFAULT_RATE_ENV)
    names = [f"t{n}" for n in range(4)]
    for name in names:
        start_pool_worker(run, name, pool="threads", concurrency=4)
    run.wait_ready(*names)

    sampler = rate_sampler(run.stack.sandbox)
    started = time.monotonic()
    lead_ids = run.push_raw(people(LEADS, tag="rate", consent=True))
    run.wait_settled(lead_ids, 180)
    elapsed = time.monotonic() - started
    sampler.stop()

    stats = run.stack.sandbox.stats()
    refused = stats["throttled_429"]
    rate, seconds, requests = sampler.steady_rate(LEADS // 10, LEADS * 9 // 10)
    share = rate / SANDBOX_RATE_PER_S
    whole = stats["api_requests"] / elapsed / SANDBOX_RATE_PER_S
    print(f"\nRATE-SHARE {share:.3f} steady ({requests} requests in {seconds:.1f} s = "
          f"{rate:.2f}/s against {SANDBOX_RATE_PER_S:g}/s); whole run {whole:.3f} "
          f"({stats['api_requests']} requests in {elapsed:.1f} s); 429 {refused}; "
          f"pool threads 4 x 4")
    assert refused == {"throttled": 0, "quota_exceeded": 0}
    assert stats["contacts"]["count"] == LEADS
    assert stats["sign_up_form"]["max_calls_per_contact"] == 1
    assert share >= 0.90
