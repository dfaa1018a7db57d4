"""Delivered leads counted by the minute: one HINCRBY per delivery, folded into a running total.

The `deliver` move (worker/lua/ledger.lua) adds one to the field of its epoch minute in
`<prefix>:delivered:minutes`, on every path (a single lead, an import's leads). `counts` folds
the minutes that left the recent window into the `stats` hash's `delivered` and answers the
last hour and the total in the same atomic step (worker/lua/delivered_fold.lua); `leadsync
status` and the reconcile beat task run it, so the hash keeps about an hour of fields.

This replaced a sorted set with one member per delivery for an hour (at 300 leads/s a million
members, ~100 MB), which cost a ZADD and a ZREMRANGEBYSCORE per delivered lead beside the
counter's HINCRBY. The fold also deletes that set where an older version left it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from worker.base.keys import Keys
from worker.lua import script

FOLD = script("delivered_fold")
MINUTE_S = 60
RECENT_WINDOW_S = 3_600.0  # "delivered" in `leadsync status`: the last hour


@dataclass(frozen=True)
class Delivered:
    recent: int  # in the last hour, counted by whole minutes (first_recent_minute)
    total: int  # since the stats began: the folded total and every minute not folded yet


def minute_of(t: float) -> int:
    """The epoch minute a delivery at `t` (epoch s) is counted under."""
    return math.floor(t / MINUTE_S)


def first_recent_minute(now: float) -> int:
    """The oldest minute still counted as recent: the first that began inside the window.

    By whole minutes, the last hour is this minute so far and the 59 or 60 before it whose
    start is at most RECENT_WINDOW_S ago: at most one minute's deliveries fewer than an exact
    hour's (the minute that straddles its start)."""
    return math.ceil((now - RECENT_WINDOW_S) / MINUTE_S)


def counts(redis: Any, keys: Keys, *, now: float | None = None) -> Delivered:
    """Fold the minutes older than the window into the total; the last hour and the total."""
    now = time.time() if now is None else now
    recent, total = FOLD.run(redis, keys=[keys.delivered_minutes, keys.stats,
                                          keys.delivered_recent],
                             args=[first_recent_minute(now)])
    return Delivered(recent=int(recent), total=int(total))
