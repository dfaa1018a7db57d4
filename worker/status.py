"""Everything `leadsync status` shows, gathered in one dict (JSON-ready, never a secret).

Token facts come from the token layer (worker.auth.status), lead counts from worker.stats
(delivery's bookkeeping); queue depths are read straight from Celery's Redis lists, so a
backlog shows even when no worker runs.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import Any, cast

from redis import Redis
from redis.exceptions import RedisError

from worker.auth.access import CONTROL_QUEUE
from worker.auth.status import token_status
from worker.enqueue import redis_location
from worker.errors import RedisUnavailableError
from worker.settings import Settings
from worker.wire import QUEUE as LEADS_QUEUE

LeadCounts = Callable[[Settings, Redis], dict[str, Any]]


def _lead_counts() -> LeadCounts | None:
    """worker.stats.lead_counts, or None while delivery's stats module is not installed."""
    try:
        module = importlib.import_module("worker.stats")
    except ModuleNotFoundError as exc:
        if exc.name == "worker.stats":
            return None
        raise
    return cast(LeadCounts, module.lead_counts)


def gather_status(settings: Settings, redis: Redis, *, now: float | None = None) -> dict[str, Any]:
    """Token state, queue depths and lead counts; raises RedisUnavailableError."""
    now = time.time() if now is None else now
    try:
        queues = {LEADS_QUEUE: int(redis.llen(LEADS_QUEUE)),
                  CONTROL_QUEUE: int(redis.llen(CONTROL_QUEUE))}
        token = token_status(settings, redis, now=now)
        counts = _lead_counts()
        leads = counts(settings, redis) if counts else {"available": False}
    except RedisError as exc:
        raise RedisUnavailableError(
            f"Redis unavailable at {redis_location(redis)}: {type(exc).__name__}"
        ) from None
    return {
        "generated_at": now,
        "account": settings.account,
        "redis": redis_location(redis),
        "token": token,
        "queues": queues,
        "leads": leads,
    }
