"""How long a lead waits before its next try: exponential backoff with full jitter.

Full jitter (a uniform draw between 0 and the exponential ceiling) spreads a burst of failed
leads over the whole window instead of sending them back together. The wait is a schedule
entry in Redis (worker/ledger/schedule.py), so it need not fit the broker's visibility timeout.
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
