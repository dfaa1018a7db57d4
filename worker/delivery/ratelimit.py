"""One rate limit and one daily quota for every process on every machine (Redis + Lua).

Constant Contact limits the application, not the process: about 4 requests/s and 10,000 a day
per API key (facts sheet 5), so Celery's per-worker `rate_limit` cannot keep a fleet inside it.
GCRA with a burst of one spaces grants evenly, T = 1/rate apart: at the default 3.7/s any five
grants span at least 1.08 s, so a server counting 4 per sliding second sees no 429 unless a
request's trip from grant to arrival varies by more than ~80 ms (4T - 1 s = 81 ms; at 3.8/s it
is 53 ms, which a loaded 2-core test machine exceeded in 3 runs of 14; at 4/s none). The daily
count is keyed by the UTC date; lead calls stop `quota_reserve` short of the quota so token and
lookup calls still fit.
Time is passed into the script (the caller's clock), so tests can move it; across machines this
means clocks must agree (NTP): a host running behind can take a slot early by its skew, which
spends the same ~80 ms margin.

A lead's first slot can be asked for in the batch that starts the lead (worker/delivery/
lead_steps.py: `take_in`, then `offer` the reply): the next `acquire` in the same thread uses it
if it comes within PREGRANT_FRESH_S, so the grant-to-send time stays what it is for a slot asked
for just before the request; a later one is not used (that slot stays empty, which only spaces
requests more) and a fresh slot is asked for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.exceptions import RedisError

from worker.base.errors import QuotaExhaustedError, RateLimitedLocallyError, RedisUnavailableError
from worker.base.scope import Scope
from worker.lua import Batch, script

QUOTA_KEY_TTL_S = 2 * 86_400
ACQUIRE = script("acquire")  # worker/lua/acquire.lua, run by SHA
PREGRANT_FRESH_S = 0.05  # well inside the ~80 ms grant-to-arrival margin above


@dataclass(frozen=True)
class Grant:
    used_today: int  # requests counted today (UTC), this one included


DAY_S = 86_400  # a UTC day in epoch seconds (POSIX time has no leap seconds)
# The last date built, with the epoch seconds it holds for: [start, end). Building it was 1 %
# of a worker's CPU when done on every limiter call; one tuple, so threads see it whole.
_day: tuple[float, float, str] = (0.0, 0.0, "")


def utc_date(now: float) -> str:
    """The UTC date of epoch seconds `now`, as YYYY-MM-DD (built once per day crossed)."""
    global _day
    start, end, date = _day
    # The last millisecond before midnight is left to datetime, which rounds to microseconds:
    # a time a hair before midnight can round into the next day.
    if start <= now < end - 0.001:
        return date
    moment = datetime.fromtimestamp(now, UTC)
    date = moment.strftime("%Y-%m-%d")
    start = moment.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    _day = (start, start + DAY_S, date)
    return date


def next_utc_midnight(now: float) -> datetime:
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day + timedelta(days=1)


class FleetLimiter:
    """One limiter for every process on every machine (Redis + Lua)."""

    def __init__(self, scope: Scope, *, clock: Callable[[], float] = time.time) -> None:
        settings = scope.settings
        self.redis = scope.redis
        self.keys = scope.keys
        self.interval_ms = 1000.0 / settings.rate_limit_per_s
        self.daily_quota = settings.daily_quota
        self.lead_quota = max(settings.daily_quota - settings.quota_reserve, 0)
        self.clock = clock
        self._offered = threading.local()  # a slot taken in a batch, for this thread's next call

    def _call(self, now: float, reserve: bool) -> tuple[list[str], list[str | float | int]]:
        limit = self.daily_quota if reserve else self.lead_quota
        return ([self.keys.rate_limit, self.keys.daily_quota(utc_date(now))],
                [f"{now * 1000:.3f}", f"{self.interval_ms:.6f}", limit, QUOTA_KEY_TTL_S])

    def take_in(self, batch: Batch) -> float:
        """Add a lead-quota slot request to `batch`; returns the time it was asked for (give it
        to `offer` with the reply)."""
        now = self.clock()
        batch.script(ACQUIRE, *self._call(now, reserve=False))
        return now

    def offer(self, reply: Any, asked_at: float) -> None:
        """The reply of a `take_in`: the next `acquire` in this thread starts from it."""
        self._offered.slot = (reply, asked_at, time.monotonic())

    def discard_offer(self) -> None:
        self._offered.slot = None

    def try_acquire(self, *, reserve: bool = False) -> Grant:
        """A slot now, or RateLimitedLocallyError / QuotaExhaustedError (nothing counted)."""
        offered = getattr(self._offered, "slot", None)
        if offered is not None:
            self._offered.slot = None
            reply, asked_at, at = offered
            granted = int(reply[0])
            # A spent lead quota may still leave the reserve: a reserve call asks again.
            if time.monotonic() - at <= PREGRANT_FRESH_S and not (granted == -1 and reserve):
                return self._answer(reply, asked_at, self.lead_quota)
        now = self.clock()
        keys, args = self._call(now, reserve)
        try:
            # EVALSHA; the loader reloads the script on NOSCRIPT (restart, SCRIPT FLUSH, fail-over).
            reply = ACQUIRE.run(self.redis, keys=keys, args=args)
        except RedisError as exc:
            raise RedisUnavailableError(
                f"rate limiter unavailable: {type(exc).__name__}") from None
        return self._answer(reply, now, self.daily_quota if reserve else self.lead_quota)

    def _answer(self, reply: Any, now: float, limit: int) -> Grant:
        granted, wait_ms, used = reply
        if int(granted) == 1:
            return Grant(int(used))
        if int(granted) == -1:
            midnight = next_utc_midnight(now)
            raise QuotaExhaustedError(
                f"daily quota spent ({int(used)} of {limit} requests today); resuming at "
                f"{midnight:%Y-%m-%d %H:%M} UTC", resume_at=midnight)
        raise RateLimitedLocallyError("no request slot yet", retry_after_s=int(wait_ms) / 1000)

    def acquire(self, *, reserve: bool = False, max_wait_s: float = 30.0,
                sleep: Callable[[float], None] = time.sleep) -> Grant:
        """Wait for a slot (never longer than `max_wait_s`); waiting spends no retries."""
        waited = 0.0
        while True:
            try:
                return self.try_acquire(reserve=reserve)
            except RateLimitedLocallyError as exc:
                if waited + exc.retry_after_s > max_wait_s:
                    raise
                # Sleep a hair past the slot: another process may take it, then we go again.
                pause = max(exc.retry_after_s, 0.001)
                sleep(pause)
                waited += pause

    def used_today(self, now: float | None = None) -> int:
        """Requests counted on the UTC day of `now` (default: the limiter's clock)."""
        try:
            raw = self.redis.get(self.keys.daily_quota(utc_date(
                self.clock() if now is None else now)))
        except RedisError as exc:
            raise RedisUnavailableError(
                f"rate limiter unavailable: {type(exc).__name__}") from None
        return int(raw or 0)

