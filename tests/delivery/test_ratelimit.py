"""The fleet limiter on a real Redis: even spacing, the daily quota, NOSCRIPT, many processes."""

from __future__ import annotations

import math
import multiprocessing
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from worker.base.errors import QuotaExhaustedError, RateLimitedLocallyError, RedisUnavailableError
from worker.base.scope import Scope
from worker.base.settings import Settings
from worker.delivery.ratelimit import FleetLimiter, utc_date
from worker.demo.embedded_redis import free_port
from worker.sandbox.limits import WindowLimiter

pytestmark = pytest.mark.redis
NOON = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def max_in_any_second(times: list[float]) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_grants_are_spaced_one_interval_apart_and_the_wait_is_exact(
    make_settings: Any, redis_client: redis.Redis
) -> None:
    clock = Clock(NOON)
    limiter = FleetLimiter(Scope(make_settings(rate_limit_per_s=4), redis_client), clock=clock)
    assert limiter.try_acquire().used_today == 1
    with pytest.raises(RateLimitedLocallyError) as early:
        limiter.try_acquire()
    assert early.value.retry_after_s == 0.25
    clock.now += 0.249
    with pytest.raises(RateLimitedLocallyError) as still:
        limiter.try_acquire()
    assert still.value.retry_after_s == pytest.approx(0.001, abs=0.001)
    clock.now += 0.001
    assert limiter.try_acquire().used_today == 2  # refused tries were not counted
    assert 0 < redis_client.pttl("leadsync:ratelimit:gcra") <= 250 + 1000  # state expires


def test_no_second_ever_holds_more_than_the_rate_under_jittered_demand(
    make_settings: Any, redis_client: redis.Redis
) -> None:
    clock = Clock(NOON)
    limiter = FleetLimiter(Scope(make_settings(rate_limit_per_s=3.8), redis_client), clock=clock)
    rng = random.Random(11)
    granted: list[float] = []
    while clock.now < NOON + 60:
        clock.now += rng.uniform(0, 0.02)  # eager callers, arriving in random order
        try:
            limiter.try_acquire()
            granted.append(clock.now)
        except RateLimitedLocallyError:
            pass
    assert max_in_any_second(granted) <= math.ceil(3.8)
    assert len(granted) >= 0.95 * 3.8 * 60  # and the allowed rate is used


def _sandbox_refusals(make_settings: Any, redis_client: redis.Redis, rate: float,
                      jitter_s: float) -> int:
    """Grants taken as soon as allowed, each arriving up to `jitter_s` later at the sandbox."""
    redis_client.flushdb()
    clock = Clock(NOON)
    limiter = FleetLimiter(Scope(make_settings(rate_limit_per_s=rate), redis_client), clock=clock)
    rng = random.Random(7)
    arrivals: list[float] = []
    while clock.now < NOON + 300:
        try:
            limiter.try_acquire()
            arrivals.append(clock.now + rng.uniform(0, jitter_s))
        except RateLimitedLocallyError as exc:
            clock.now += exc.retry_after_s + rng.uniform(0, 0.002)  # back right on the slot
    assert len(arrivals) >= 0.99 * rate * 300
    window = WindowLimiter(4.0)  # the sandbox default: 4 per sliding second, counted at arrival
    return sum(not window.admit("client", t) for t in sorted(arrivals))


def test_the_spacing_margin_absorbs_tens_of_ms_of_jitter_at_the_sandbox(
    make_settings: Any, redis_client: redis.Redis
) -> None:
    # 3.8/s: five grants span 4T = 1052.6 ms, so 45 ms of grant-to-arrival jitter is absorbed.
    assert _sandbox_refusals(make_settings, redis_client, 3.8, 0.045) == 0
    # 4/s: five grants span exactly 1 s, and the same jitter draws 429s. Hence "just under 4".
    assert _sandbox_refusals(make_settings, redis_client, 4.0, 0.045) > 0


def test_daily_quota_keeps_a_reserve_and_resets_at_midnight_utc(
    make_settings: Any, redis_client: redis.Redis
) -> None:
    clock = Clock(NOON)
    settings = make_settings(rate_limit_per_s=1000, daily_quota=10, quota_reserve=3)
    limiter = FleetLimiter(Scope(settings, redis_client), clock=clock)
    for _ in range(7):
        clock.now += 0.01
        limiter.try_acquire()
    clock.now += 0.01
    with pytest.raises(QuotaExhaustedError) as spent:
        limiter.try_acquire()
    assert spent.value.resume_at == datetime(2026, 11, 29, tzinfo=UTC)
    assert limiter.used_today() == 7  # the lead quota (10 - reserve 3) is spent
    for _ in range(3):  # lookups may still use the reserve
        clock.now += 0.01
        limiter.try_acquire(reserve=True)
    clock.now += 0.01
    with pytest.raises(QuotaExhaustedError):
        limiter.try_acquire(reserve=True)
    assert limiter.used_today() == 10
    clock.now = datetime(2026, 11, 29, 0, 0, 1, tzinfo=UTC).timestamp()
    assert limiter.try_acquire().used_today == 1
    assert 0 < redis_client.ttl("leadsync:quota:2026-11-29") <= 2 * 86_400


def test_a_slot_just_before_midnight_counts_on_that_day_and_one_just_after_on_the_next(
    make_settings: Any, redis_client: redis.Redis
) -> None:
    midnight = datetime(2026, 11, 29, tzinfo=UTC).timestamp()
    clock = Clock(midnight - 0.005)
    settings = make_settings(rate_limit_per_s=1000, daily_quota=10, quota_reserve=0)
    limiter = FleetLimiter(Scope(settings, redis_client), clock=clock)
    limiter.try_acquire()  # 23:59:59.995
    clock.now = midnight - 0.0035
    limiter.try_acquire()  # 23:59:59.9965
    clock.now = midnight + 0.002
    assert limiter.try_acquire().used_today == 1  # 00:00:00.002: a new day, a new count
    assert limiter.used_today(midnight - 0.0001) == 2
    assert limiter.used_today(midnight) == 1
    assert int(redis_client.get("leadsync:quota:2026-11-28") or 0) == 2


@pytest.mark.parametrize("day", [datetime(2026, 11, 29, tzinfo=UTC),
                                 datetime(2027, 1, 1, tzinfo=UTC),
                                 datetime(2028, 2, 29, tzinfo=UTC)])
def test_the_utc_date_turns_at_midnight_whichever_way_the_clock_moves(day: datetime) -> None:
    midnight = day.timestamp()
    before = datetime.fromtimestamp(midnight - 1, UTC).strftime("%Y-%m-%d")
    after = day.strftime("%Y-%m-%d")
    # Forward across midnight, then back (a test clock, or a host clock stepped back by NTP).
    for now, date in [(midnight - 3600, before), (midnight - 0.001, before),
                      (midnight - 0.000002, before), (midnight, after), (midnight + 0.001, after),
                      (midnight + 86_399.9, after), (midnight - 0.5, before),
                      (midnight + 86_400, (day + timedelta(days=1)).strftime("%Y-%m-%d")),
                      (midnight + 1, after)]:
        assert utc_date(now) == date, (now - midnight, date)


def test_the_utc_date_matches_datetime_for_any_time() -> None:
    draw = random.Random(20261129)
    midnight = datetime(2026, 11, 29, tzinfo=UTC).timestamp()
    # datetime rounds to microseconds: 0.4 µs before midnight is already the next day.
    for offset in (-10, -1e-6, -6e-7, -4e-7, -1e-7, 0.0):
        now = midnight + offset
        assert utc_date(now) == datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d"), offset
    for _ in range(5_000):
        near = midnight + 86_400 * draw.randint(-800, 800)
        now = near + draw.choice([draw.uniform(-2, 2), draw.uniform(-1e-5, 1e-5),
                                  draw.uniform(-86_400, 86_400)])
        assert utc_date(now) == datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d"), now


def test_a_flushed_script_cache_is_reloaded(make_settings: Any,
                                            redis_client: redis.Redis) -> None:
    clock = Clock(NOON)
    limiter = FleetLimiter(Scope(make_settings(rate_limit_per_s=10), redis_client), clock=clock)
    limiter.try_acquire()
    redis_client.script_flush()
    clock.now += 1
    assert limiter.try_acquire().used_today == 2


def test_acquire_waits_for_its_slot_without_failing(make_settings: Any,
                                                    redis_client: redis.Redis) -> None:
    clock = Clock(NOON)
    limiter = FleetLimiter(Scope(make_settings(rate_limit_per_s=2), redis_client), clock=clock)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    for _ in range(3):
        limiter.acquire(sleep=sleep)
    assert slept == [0.5, 0.5]
    with pytest.raises(RateLimitedLocallyError):
        limiter.acquire(max_wait_s=0.1, sleep=sleep)


def _hammer(url: str, ready: Any, go: Any, deadline: Any, out: Any) -> None:
    settings = Settings(_env_file=None, redis_url=url, rate_limit_per_s=3.8)  # type: ignore[call-arg]
    client = redis.Redis.from_url(url)
    limiter = FleetLimiter(Scope(settings, client))
    limiter.used_today()  # connected before the start, so start-up cost is not measured
    ready.put(None)
    go.wait(60)
    times = []
    while True:
        try:
            limiter.acquire(max_wait_s=max(deadline.value - time.time(), 0))
        except RateLimitedLocallyError:
            break
        times.append(time.time())
    client.close()
    out.put(times)


def test_processes_share_one_rate(make_settings: Any, redis_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    deadline = ctx.Value("d", 0.0)
    seconds = 3.0
    procs = [ctx.Process(target=_hammer, args=(redis_url, ready, go, deadline, out))
             for _ in range(4)]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get(timeout=60)
    deadline.value = time.time() + seconds  # one window for all, however slow the spawns were
    go.set()
    per_process = [out.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    grants = [t for times in per_process for t in times]
    assert max_in_any_second(grants) <= math.ceil(3.8)
    # Never more than the rate allows (one burst slot at the start); fewer when a loaded machine
    # starves the processes, so the exact spacing is checked on a fake clock above instead.
    assert 0 < len(grants) <= math.ceil(3.8 * seconds) + 1
    assert len(set(grants)) == len(grants)
    client = redis.Redis.from_url(redis_url)
    limiter = FleetLimiter(Scope(make_settings(redis_url=redis_url), client))
    assert limiter.used_today() == len(grants)  # every grant counted once, fleet-wide
    client.close()


def test_redis_down_is_a_clear_error(make_settings: Any) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    with pytest.raises(RedisUnavailableError, match="rate limiter unavailable"):
        FleetLimiter(Scope(make_settings(redis_url=url), client)).try_acquire()
