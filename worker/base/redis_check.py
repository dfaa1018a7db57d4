"""Is the broker's Redis fit to be the system of record? (worker start, `health`, `status`)

Leads waiting in the queue, the ledger and the rotating refresh token live only in Redis. A Redis
without persistence (neither AOF nor RDB) loses them all on a restart; one that evicts keys under
memory pressure (`maxmemory-policy` other than `noeviction`) drops them silently. Both are
problems to name loudly. Managed services often disable CONFIG: then we say we could not check.
`LEADSYNC_ALLOW_VOLATILE_REDIS=true` (demos, throw-away test servers) turns problems into notes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from redis.exceptions import RedisError, ResponseError

from worker.base.redis_text import text

log = logging.getLogger("leadsync.redis_check")

OPT_OUT = "LEADSYNC_ALLOW_VOLATILE_REDIS=true"
PERSISTENCE_FIX = ("turn on AOF (`appendonly yes`, e.g. `redis-server --appendonly yes` or "
                   "`CONFIG SET appendonly yes` plus the same in redis.conf)")
EVICTION_FIX = "set `maxmemory-policy noeviction` (redis.conf or `CONFIG SET`)"


@dataclass(frozen=True)
class RedisFitness:
    """The verdict: `ok`, `volatile_allowed` (problems, opted out), `unfit`, or `unknown`."""

    state: Literal["ok", "volatile_allowed", "unfit", "unknown"]
    problems: list[str] = field(default_factory=list)  # each names the problem and the fix
    note: str = ""

    @property
    def failing(self) -> bool:
        return self.state == "unfit"

    def summary(self) -> str:
        if self.state == "ok":
            return "persistence on, maxmemory-policy noeviction"
        if self.state == "unknown":
            return self.note
        text = "; ".join(self.problems)
        return f"{text} (allowed by {OPT_OUT})" if self.state == "volatile_allowed" else text

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "problems": self.problems, "note": self.note}


def _config(redis: Any, name: str) -> str:
    reply = redis.config_get(name)
    value = reply.get(name, "") if isinstance(reply, dict) else ""
    return text(value)


def check_redis(redis: Any, *, allow_volatile: bool) -> RedisFitness:
    """Read `appendonly`, `save` and `maxmemory-policy`; RedisError (unreachable) propagates."""
    try:
        appendonly = _config(redis, "appendonly")
        save = _config(redis, "save")
        policy = _config(redis, "maxmemory-policy")
    except ResponseError as exc:  # CONFIG renamed or disabled (managed services)
        return RedisFitness("unknown", note=(
            "could not check Redis persistence and eviction: CONFIG GET refused "
            f"({str(exc)[:80]}); make sure your provider keeps AOF or RDB on and "
            "maxmemory-policy noeviction"))
    problems = []
    if appendonly.lower() != "yes" and not save.strip():
        problems.append(f"Redis has no persistence (appendonly no, save ''): a restart loses "
                        f"every queued lead and the token; {PERSISTENCE_FIX}")
    if policy and policy.lower() != "noeviction":
        problems.append(f"Redis maxmemory-policy is {policy}: under memory pressure it deletes "
                        f"queued leads, ledger entries or the token; {EVICTION_FIX}")
    if not problems:
        return RedisFitness("ok")
    return RedisFitness("volatile_allowed" if allow_volatile else "unfit", problems)


def log_redis_fitness(redis: Any, *, allow_volatile: bool) -> RedisFitness | None:
    """The worker's start-up check: ERROR per problem (WARNING when opted out or unknown)."""
    try:
        fitness = check_redis(redis, allow_volatile=allow_volatile)
    except RedisError as exc:
        log.warning("could not check Redis persistence at start: %s", type(exc).__name__)
        return None
    if fitness.state == "unknown":
        log.warning("%s", fitness.note, extra={"event": "redis_unchecked"})
    for problem in fitness.problems:
        if fitness.state == "unfit":
            log.error("Redis is not safe as leadsync's system of record: %s (or set %s for a "
                      "throw-away Redis)", problem, OPT_OUT, extra={"event": "redis_unfit"})
        else:
            log.warning("Redis is volatile, allowed by %s: %s", OPT_OUT, problem,
                        extra={"event": "redis_volatile_allowed"})
    return fitness
