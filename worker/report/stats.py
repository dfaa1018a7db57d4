"""Lead counts for `leadsync status` and the demo, read from delivery's bookkeeping in one place.

A flat dict (JSON-ready, never personal data): queued, held by the bulk stager, in flight,
retrying, parked by reason with the next resume time, dead letters by reason, delivered in the
last hour, running totals, requests used today against the quota, and the last errors (redacted).
"""

from __future__ import annotations

import json
import time
from typing import Any

from worker.account import Account
from worker.base.names import LEADS_QUEUE
from worker.base.priority import queued
from worker.base.redis_text import text as _text
from worker.ledger.delivered import counts as delivered_counts
from worker.ledger.lead_state import LeadState

SHOWN_ERRORS = 5


def lead_counts(account: Account, *, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    settings, redis, keys = account.settings, account.redis, account.keys
    parked = account.parking.counts()
    dead = account.dead_letters.counts_by_reason()
    totals = {_text(k): int(v) for k, v in redis.hgetall(keys.stats).items()}
    used = account.limiter.used_today()
    errors = [json.loads(raw) for raw in redis.lrange(keys.last_errors, 0, SHOWN_ERRORS - 1)]
    # Counted by whole minutes (worker/ledger/delivered.py): "delivered" is this minute so far
    # and those before it that began within RECENT_WINDOW_S (59 to 60 minutes); the total is
    # what older minutes were folded into plus every minute not folded yet.
    delivered = delivered_counts(redis, keys, now=now)
    counts: dict[str, Any] = {
        "queued": queued(redis, LEADS_QUEUE),  # every priority list of `leads`
        # Backlog entries the bulk stager took off their list and holds while it stages them
        # (worker/bulk/backlog.py): after a crash they stay there until given back.
        "bulk_holding": int(redis.llen(keys.bulk.holding)),
        "in_flight": int(redis.zcard(keys.lead_state_index(LeadState.IN_FLIGHT))),
        "retrying": int(redis.zcard(keys.lead_state_index(LeadState.RETRYING))),
        # Retries and held-off copies waiting in Redis for their due time
        # (worker/ledger/schedule.py); a copy held off by a lead delivered since waits too, and
        # the promoter drops it, unsent, at that time (at most the lease).
        "scheduled": int(redis.zcard(keys.schedule)),
        "parked_reauth": parked["by_reason"].get("reauth", 0),
        "parked_quota": parked["by_reason"].get("quota", 0),
        "parked_token_key": parked["by_reason"].get("token_key", 0),
        "next_resume_at": parked["next_resume_at"].get("quota"),
        "dead_letters": sum(dead.values()),
        "dead_letters_by_reason": dead,
        "delivered": delivered.recent,
        "delivered_total": delivered.total,
        "created_total": totals.get("created", 0),
        "updated_total": totals.get("updated", 0),
        "requests_today": used,
        "daily_quota": settings.daily_quota,
        "quota_reserve": settings.quota_reserve,
        "last_errors": errors,
    }
    return counts
