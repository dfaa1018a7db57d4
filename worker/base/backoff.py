"""Every backoff in leadsync: an exponential ceiling, and full jitter below it.

A lead's next try (delivery, a bulk import's lead sent back) waits `backoff_s`: full jitter (a
uniform draw between 0 and the exponential ceiling) spreads a burst of failed leads over the
whole window instead of sending them back together; the wait is a schedule entry in Redis
(worker/ledger/schedule.py), so it need not fit the broker's visibility timeout. A bulk batch's
transient errors use the same draw; its activity polls and the token refresher's retries (one
actor each, nobody to spread out) wait the ceiling itself (`ceiling_s`).
"""

from __future__ import annotations

import random
from collections.abc import Callable


def ceiling_s(attempt: int, base_s: float, max_s: float) -> float:
    """The largest wait before try `attempt + 1` (attempt counts failures, from 1)."""
    exponent = min(max(attempt, 1) - 1, 62)  # 2**62 is already far beyond any max_s
    return float(min(max_s, base_s * (2.0**exponent)))


def backoff_s(
    attempt: int,
    base_s: float,
    max_s: float,
    *,
    draw: Callable[[float, float], float] = random.uniform,
) -> float:
    """Full jitter: uniform in [0, ceiling]."""
    return draw(0.0, ceiling_s(attempt, base_s, max_s))


def worst_case_total_s(max_retries: int, base_s: float, max_s: float) -> float:
    """The longest a lead can spend retrying (sum of the ceilings); shown in docs and tests."""
    return sum(ceiling_s(attempt, base_s, max_s) for attempt in range(1, max_retries + 1))
