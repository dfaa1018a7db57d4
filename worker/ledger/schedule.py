"""The retry schedule: leads waiting in Redis for their next try, and the promoter.

A lead that must wait (backoff, Retry-After, the limiter, a refresh, a duplicate held
elsewhere) is acknowledged only after its ledger step has put it in `<prefix>:schedule`
(score = due epoch seconds) with its message kept in the ledger (worker/lua/ledger.lua). No
ETA message waits inside a worker, so nothing about retries depends on the visibility timeout.
`promote` moves due entries back onto queue `leads` (each on the list of its priority,
worker/base/priority.py) in one Lua call (worker/lua/promote.lua);
every worker runs it every second (worker/broker/promoter.py) and the reconcile beat task as well.
"""

from __future__ import annotations

import time

from worker.base.names import LEADS_QUEUE
from worker.base.priority import queue_lists
from worker.base.scope import Scope
from worker.ledger.lead_state import LeadState
from worker.lua import script

BATCH = 500  # entries looked at per call: one call stays short even with a big backlog


class Schedule:
    def __init__(self, scope: Scope) -> None:
        self.redis = scope.redis
        self.keys = scope.keys
        self._promote = script("promote").register(scope.redis)

    def promote(self, *, now: float | None = None, batch: int = BATCH) -> int:
        """Push the due leads back onto the queue; returns how many were pushed."""
        now = time.time() if now is None else now
        lists = queue_lists(LEADS_QUEUE)  # each message back on the list of its priority
        keys = [self.keys.schedule, lists[0], self.keys.lead_state_index(LeadState.IN_FLIGHT),
                self.keys.lead_state_index(LeadState.RETRYING), *lists[1:]]
        return int(self._promote(keys=keys, args=[f"{now:.3f}", batch, self.keys.lead_prefix,
                                                  self.keys.lead_message_prefix]))

    def promote_all(self, *, now: float | None = None) -> int:
        """`promote` until nothing due is left (bounded by what was due at the start)."""
        total = 0
        for _ in range(1000):
            due = int(self.redis.zcount(self.keys.schedule, "-inf", time.time() if now is None
                                        else now))
            if not due:
                break
            total += self.promote(now=now)
        return total

    def due_at(self, lead_id: str) -> float | None:
        score = self.redis.zscore(self.keys.schedule, lead_id)
        return None if score is None else float(score)

    def size(self) -> int:
        return int(self.redis.zcard(self.keys.schedule))
