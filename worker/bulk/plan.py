"""The day's quota plan: consented single leads keep budget until 00:00 UTC, imports use the rest.

The reserve for consented leads is their observed rate (the last hour, counted per minute by the
staging gate) times the seconds left today, plus LEADSYNC_QUOTA_RESERVE (token and lookup
calls) and a floor of one hour at one lead a minute. Whatever is left of today's quota after the
reserve is the bulk budget: an import costs one call plus its polls. `single_would_finish` says
whether two calls per lead (the single no-consent path) would clear the backlog within that
budget before midnight; when not, the auto mode stages leads for imports. The expected finish
(worker/bulk/finish.py) spends the same budgets: today's, and a later day's quota less its
reserve.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

from worker.base.names import LEADS_QUEUE
from worker.base.priority import queue_lists
from worker.base.redis_text import text
from worker.base.scope import Scope
from worker.base.settings import Settings
from worker.bulk.finish import (
    CALLS_PER_SINGLE_LEAD,
    DAY_S,
    Budget,
    Finish,
    Observed,
    describe,
    estimate_finish,
)
from worker.delivery.ratelimit import FleetLimiter, next_utc_midnight

WINDOW_MINUTES = 60
FLOOR_RESERVE = 60  # one consented lead a minute for an hour, even with none seen yet


@dataclass(frozen=True)
class Plan:
    calls_left_today: int
    consented_per_s: float  # observed over the last hour
    reserve: int  # calls kept for consented leads (and tokens) until midnight
    bulk_budget: int  # calls imports and their polls may use today
    backlog: int  # leads queued or staged, not yet in an import
    in_imports: int  # leads in batches sent or about to be sent
    seconds_to_midnight: float
    single_would_finish: bool
    expected_finish: float | None  # epoch s the backlog is expected to be delivered by
    finish: Finish  # how that was reached (path, bound, per day, imports ...)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def consented_rate(scope: Scope, now: float) -> float:
    keys = scope.keys.bulk
    minute = int(now // 60)
    counts = scope.redis.mget([keys.consented(minute - i) for i in range(WINDOW_MINUTES)])
    return sum(int(c or 0) for c in counts) / (WINDOW_MINUTES * 60.0)


def note_consented(scope: Scope, now: float, count: int = 1) -> None:
    """`count` consented leads seen in the minute of `now`."""
    key = scope.keys.bulk.consented(int(now // 60))
    pipe = scope.redis.pipeline(transaction=False)
    pipe.incrby(key, count)
    pipe.expire(key, (WINDOW_MINUTES + 2) * 60)
    pipe.execute()


def bulk_budget(scope: Scope, limiter: FleetLimiter, now: float
                ) -> tuple[int, int, float, int]:
    """(calls left today, consented reserve, consented rate/s, bulk budget): the quota alone,
    without the backlog reads, for the importer's check before each step."""
    settings = scope.settings
    left = max(settings.daily_quota - limiter.used_today(now), 0)
    seconds = max(next_utc_midnight(now).timestamp() - now, 0.0)
    rate = consented_rate(scope, now)
    reserve = min(left, reserve_for(settings, rate, seconds))
    return left, reserve, rate, max(left - reserve, 0)


def reserve_for(settings: Settings, consented_per_s: float, seconds: float) -> int:
    """Calls kept for consented leads (and tokens, lookups) over `seconds`."""
    return settings.quota_reserve + max(math.ceil(consented_per_s * seconds), FLOOR_RESERVE)


def quota_plan(scope: Scope, limiter: FleetLimiter, *, now: float | None = None) -> Plan:
    now = time.time() if now is None else now
    settings, redis, keys = scope.settings, scope.redis, scope.keys.bulk
    seconds = max(next_utc_midnight(now).timestamp() - now, 0.0)
    left, reserve, rate, budget = bulk_budget(scope, limiter, now)
    pipe = redis.pipeline(transaction=False)
    pipe.zcard(keys.staged)
    pipe.zrange(keys.batches, 0, -1)
    for name in queue_lists(LEADS_QUEUE):  # consented leads and the backlog's own list alike
        pipe.llen(name)
    staged, batch_ids, *lengths = pipe.execute()
    queued = sum(int(n) for n in lengths)
    in_imports = 0
    if batch_ids:
        pipe = redis.pipeline(transaction=False)
        for batch_id in batch_ids:
            pipe.hget(keys.batch(text(batch_id)), "count")
        in_imports = sum(int(c or 0) for c in pipe.execute())
    backlog = int(queued) + int(staged)
    single_ok = backlog * CALLS_PER_SINGLE_LEAD <= budget
    counters = {text(k): text(v) for k, v in redis.hgetall(keys.counters).items()}
    day = max(settings.daily_quota - reserve_for(settings, rate, DAY_S), 0)
    finish = estimate_finish(settings, now, Budget(budget, day, rate), backlog=backlog,
                             in_imports=in_imports, single_ok=single_ok,
                             observed=Observed.from_counters(counters))
    return Plan(calls_left_today=left, consented_per_s=round(rate, 4), reserve=reserve,
                bulk_budget=budget, backlog=backlog, in_imports=in_imports,
                seconds_to_midnight=round(seconds, 1), single_would_finish=single_ok,
                expected_finish=finish.at, finish=finish)


def bulk_status(scope: Scope, limiter: FleetLimiter, *, now: float | None = None
                ) -> dict[str, Any]:
    """What `leadsync status` shows of the bulk path: the mode, the day's plan, the counters."""
    plan = quota_plan(scope, limiter, now=now)
    settings, redis, keys = scope.settings, scope.redis, scope.keys.bulk
    counters = {text(k): int(v) for k, v in redis.hgetall(keys.counters).items()}
    return {"mode": settings.bulk, "plan": plan.as_dict(),
            "staged": int(redis.zcard(keys.staged)), "batches": int(redis.zcard(keys.batches)),
            "imports": counters.get("imports", 0), "polls": counters.get("polls", 0),
            "throttled": counters.get("throttled", 0), "resent": counters.get("resent", 0)}


def render_bulk(bulk: dict[str, Any]) -> str:
    """One line for `leadsync status` (text)."""
    plan = bulk["plan"]
    when = describe(plan["finish"])
    return (f"mode {bulk['mode']}; calls left today {plan['calls_left_today']}, reserve "
            f"{plan['reserve']} (consented {plan['consented_per_s']}/s), bulk budget "
            f"{plan['bulk_budget']}; backlog {plan['backlog']}, staged {bulk['staged']}, in "
            f"imports {plan['in_imports']} ({bulk['batches']} batches); expected finish {when};"
            f" imports {bulk['imports']}, polls {bulk['polls']}, throttled {bulk['throttled']}")
