"""Backoff: exponential ceilings, full jitter, and never past the visibility timeout."""

from __future__ import annotations

import random

from worker.base.backoff import backoff_s, ceiling_s, worst_case_total_s
from worker.base.settings import Settings


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
