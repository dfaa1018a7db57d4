"""Everything `leadsync status` shows, gathered in one dict (JSON-ready, never a secret).

Token facts come from the token layer (worker.auth.status), lead counts from worker.report.stats
(delivery's bookkeeping); queue depths are read straight from Celery's Redis lists, so a
backlog shows even when no worker runs.
"""

from __future__ import annotations

import time
from typing import Any

from redis.exceptions import RedisError

from worker.account import Account
from worker.auth.status import token_status
from worker.base.errors import RedisUnavailableError
from worker.base.names import CONTROL_QUEUE, LEADS_QUEUE
from worker.base.priority import queued
from worker.base.redis_check import check_redis
from worker.bulk.plan import bulk_status
from worker.leads.enqueue import redis_location
from worker.report.stats import lead_counts


def gather_status(account: Account, *, now: float | None = None) -> dict[str, Any]:
    """Token state, queue depths and lead counts; raises RedisUnavailableError."""
    now = time.time() if now is None else now
    settings, redis = account.settings, account.redis
    try:
        queues = {LEADS_QUEUE: queued(redis, LEADS_QUEUE),  # all its priority lists
                  CONTROL_QUEUE: queued(redis, CONTROL_QUEUE)}
        token = token_status(account.tokens, now=now)
        leads = lead_counts(account, now=now)
        fitness = check_redis(redis, allow_volatile=settings.allow_volatile_redis)
        # the quota plan (worker/bulk/plan.py)
        bulk = bulk_status(account, account.limiter, now=now)
    except RedisError as exc:
        raise RedisUnavailableError(
            f"Redis unavailable at {redis_location(redis)}: {type(exc).__name__}"
        ) from None
    return {
        "generated_at": now,
        "account": settings.account,
        "redis": redis_location(redis),
        "token": token,
        "redis_check": {**fitness.as_dict(), "summary": fitness.summary()},
        "queues": queues,
        "leads": leads,
        "bulk": bulk,
    }
