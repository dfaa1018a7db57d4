"""Backoff: exponential ceilings, full jitter, and never past the visibility timeout; what a
failure that spends a try leads to (a retry after the backoff, or a dead letter)."""

from __future__ import annotations

import random
from types import SimpleNamespace

from worker.base.backoff import backoff_s, ceiling_s, worst_case_total_s
from worker.base.settings import Settings
from worker.delivery.outcome import spend_try


def test_ceilings_double_then_stop_at_the_maximum() -> None:
    assert [ceiling_s(n, 5, 2700) for n in range(1, 13)] == [
        5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 2700, 2700]
    assert ceiling_s(10_000, 5, 2700) == 2700  # no overflow on absurd attempt numbers


def test_full_jitter_draws_between_zero_and_the_ceiling() -> None:
    rng = random.Random(3)
    draws = [backoff_s(4, 5, 2700, draw=rng.uniform) for _ in range(2000)]
    assert 0 <= min(draws) < 2 and 38 < max(draws) <= 40
    assert 15 < sum(draws) / len(draws) < 25  # mean of uniform(0, 40)


def test_defaults_spread_about_a_dozen_tries_over_hours() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    total = worst_case_total_s(settings.max_retries, settings.backoff_base_s,
                               settings.backoff_max_s)
    assert settings.max_retries == 12
    assert 2 * 3600 < total < 4 * 3600


def test_a_spent_try_retries_within_the_budget_then_dead_letters() -> None:
    """The one decision a single lead's failed try and a failed import's lead share."""
    budget = SimpleNamespace(max_retries=3, backoff_base_s=5.0, backoff_max_s=2700.0)
    top = SimpleNamespace(draws=0)

    def ceiling(low: float, high: float) -> float:
        top.draws += 1
        return high

    waits = [spend_try(n, "HTTP 503", budget, draw=ceiling) for n in (1, 2, 3)]
    assert [(s.exhausted, s.wait_s, s.reason) for s in waits] == [
        (False, 5.0, "HTTP 503"), (False, 10.0, "HTTP 503"), (False, 20.0, "HTTP 503")]
    last = spend_try(4, "HTTP 503", budget, draw=ceiling)
    assert last.exhausted and last.reason == "retries exhausted after 4 tries: HTTP 503"
    assert top.draws == 3  # no backoff drawn for a dead letter
    assert spend_try(1, "x", SimpleNamespace(max_retries=0, backoff_base_s=5.0,
                                             backoff_max_s=9.0)).exhausted


def test_a_servers_retry_after_beats_a_shorter_backoff_but_not_a_longer_one() -> None:
    budget = SimpleNamespace(max_retries=12, backoff_base_s=5.0, backoff_max_s=2700.0)
    assert spend_try(2, "429", budget, retry_after_s=30.0, draw=lambda lo, hi: hi).wait_s == 30.0
    assert spend_try(5, "429", budget, retry_after_s=30.0, draw=lambda lo, hi: hi).wait_s == 80.0
    assert spend_try(1, "429", budget, retry_after_s=None, draw=lambda lo, hi: lo).wait_s == 0.0
    # Past the budget a Retry-After does not buy another try.
    assert spend_try(13, "429", budget, retry_after_s=30.0).exhausted
