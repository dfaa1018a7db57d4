"""The per-lead ledger: one Redis hash per `lead_id` that says where the lead is.

A lead is in exactly one state at a time (docs/architecture.md): queued, in_flight, retrying,
parked, delivered, dead_lettered. A redelivered message (crash, visibility timeout, a producer
sending twice) whose lead is already delivered, parked or dead-lettered is not sent again.
Failed tries are counted here, not by Celery, so waiting never spends the retry budget.
Ledger entries live `LEADSYNC_OUTCOME_TTL_S`.
"""

from __future__ import annotations

import json
import time
from typing import Any

from redis import Redis
from redis.client import Pipeline

from worker.keys import Keys
from worker.settings import Settings

QUEUED = "queued"
IN_FLIGHT = "in_flight"
RETRYING = "retrying"
PARKED = "parked"
DELIVERED = "delivered"
DEAD_LETTERED = "dead_lettered"
STATES = (QUEUED, IN_FLIGHT, RETRYING, PARKED, DELIVERED, DEAD_LETTERED)
INDEXED = (IN_FLIGHT, RETRYING)  # counted by `leadsync status` from sorted sets
FINAL = frozenset({DELIVERED, DEAD_LETTERED})
SETTLED = frozenset({DELIVERED, DEAD_LETTERED, PARKED})  # a redelivered copy has nothing to do
RECENT_WINDOW_S = 3_600.0
LAST_ERRORS_KEPT = 20


class Ledger:
    """Reads and writes lead states; writes can join a caller's MULTI pipeline."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.redis = redis
        self.keys = Keys(settings.key_prefix, settings.account)
        self.ttl_s = int(settings.outcome_ttl_s)

    def get(self, lead_id: str) -> dict[str, str]:
        raw = self.redis.hgetall(self.keys.lead_outcome(lead_id))
        return {_text(k): _text(v) for k, v in raw.items()}

    def attempts(self, lead_id: str) -> int:
        return int(self.get(lead_id).get("attempts", 0) or 0)

    def write(self, pipe: Pipeline, lead_id: str, state: str, *, now: float | None = None,
              **fields: Any) -> None:
        """Queue the commands that move `lead_id` to `state` on `pipe`."""
        now = time.time() if now is None else now
        key = self.keys.lead_outcome(lead_id)
        mapping: dict[Any, Any] = {"state": state, "updated_at": f"{now:.3f}"}
        mapping.update({k: _field(v) for k, v in fields.items() if v is not None})
        pipe.hsetnx(key, "first_seen", f"{now:.3f}")
        pipe.hset(key, mapping=mapping)
        pipe.expire(key, self.ttl_s)
        for indexed in INDEXED:
            if indexed == state:
                pipe.zadd(self.keys.lead_state_index(indexed), {lead_id: now})
            else:
                pipe.zrem(self.keys.lead_state_index(indexed), lead_id)
        if state == DELIVERED:
            pipe.zadd(self.keys.delivered_recent, {lead_id: now})
            pipe.zremrangebyscore(self.keys.delivered_recent, 0, now - RECENT_WINDOW_S)

    def set_state(self, lead_id: str, state: str, **fields: Any) -> None:
        pipe = self.redis.pipeline(transaction=True)
        self.write(pipe, lead_id, state, **fields)
        pipe.execute()

    def count_attempt(self, lead_id: str) -> int:
        """One more failed try; returns the total."""
        key = self.keys.lead_outcome(lead_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hincrby(key, "attempts", 1)
        pipe.expire(key, self.ttl_s)
        return int(pipe.execute()[0])

    def forget(self, pipe: Pipeline, lead_id: str) -> None:
        """Start over (dead-letter replay): attempts back to zero, state queued."""
        pipe.delete(self.keys.lead_outcome(lead_id))
        self.write(pipe, lead_id, QUEUED)

    def note_error(self, lead_id: str, status: str, reason: str, *,
                   now: float | None = None) -> None:
        """Keep the last few errors for `leadsync status` (reasons are already redacted)."""
        entry = json.dumps({"at": time.time() if now is None else now, "lead_id": lead_id,
                            "status": status, "reason": reason[:300]})
        pipe = self.redis.pipeline(transaction=False)
        pipe.lpush(self.keys.last_errors, entry)
        pipe.ltrim(self.keys.last_errors, 0, LAST_ERRORS_KEPT - 1)
        pipe.execute()

    def bump(self, *counters: str) -> None:
        """Running totals (delivered, created, updated, dead_lettered ...)."""
        pipe = self.redis.pipeline(transaction=False)
        for counter in counters:
            pipe.hincrby(self.keys.stats, counter, 1)
        pipe.execute()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _field(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
