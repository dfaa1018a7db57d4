"""The reconciler (beat task `leadsync.reconcile`): leads whose message exists nowhere go back.

The ledger may say `in_flight` (lease run out) or `retrying` (due long ago) while the message
is in none of the places that would bring it back: not on the `leads` list, not in kombu's
`unacked` hash (restored by kombu's sweep), not in the schedule. That takes an outside hand (a
message deleted, an operator's mistake, a lost write); the reconciler then pushes the message
the ledger kept, once, through the ledger's `requeue` step, which refuses if the lead moved
meanwhile (its `updated_at` changed: settled, taken, rescheduled). It promotes due retries too,
folds the per-minute delivered counts older than an hour into the total (worker/ledger/
delivered.py: the hash stays small when no one runs `status`), and with LEADSYNC_BULK=off gives
back what a crashed backlog stager held (worker/bulk/backlog.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from worker.base.names import LEADS_QUEUE
from worker.base.priority import queue_lists
from worker.base.redis_text import text as _text
from worker.base.scope import Scope
from worker.ledger import delivered
from worker.ledger.lead_state import INDEXED, LeadState
from worker.ledger.ledger import Ledger
from worker.ledger.schedule import Schedule

UNACKED = "unacked"  # kombu's Redis transport default `unacked_key`
STALE_S = 10.0  # a retry due this long ago and not scheduled is stuck, not just being moved
PAGE = 1_000  # list entries / hash fields read per round trip while searching


@dataclass(frozen=True)
class Report:
    promoted: int = 0
    checked: int = 0
    requeued: int = 0


class Reconciler:
    def __init__(self, scope: Scope, ledger: Ledger, schedule: Schedule, *,
                 unacked_key: str = UNACKED, give_back: Callable[[], int] | None = None) -> None:
        self.redis = scope.redis
        self.keys = scope.keys
        self.ledger = ledger
        self.schedule = schedule
        # With bulk off, what a crashed backlog stager held goes back (the Account passes
        # worker/bulk/backlog.py's; the ledger does not import the bulk path).
        self.give_back = give_back
        self.unacked_key = unacked_key

    def run(self, *, now: float | None = None) -> Report:
        now = time.time() if now is None else now
        promoted = self.schedule.promote_all(now=now)
        delivered.counts(self.redis, self.keys)  # the fold goes by the clock, not by `now`
        if self.give_back is not None:
            self.give_back()
        stuck = self._candidates(now)
        if not stuck:
            return Report(promoted=promoted)
        present = self._present(stuck)
        requeued = 0
        for lead_id, entry in stuck.items():
            if lead_id in present:
                continue
            moved, _state = self.ledger.move(lead_id, "requeue", now=now,
                                             expect_updated_at=entry["updated_at"])
            requeued += int(moved)
        return Report(promoted=promoted, checked=len(stuck), requeued=requeued)

    def _candidates(self, now: float) -> dict[str, dict[str, str]]:
        """Leads in_flight past their lease, or retrying long past due and not scheduled."""
        out: dict[str, dict[str, str]] = {}
        for state in INDEXED:
            members: list[Any] = self.redis.zrangebyscore(
                self.keys.lead_state_index(state), "-inf", now - STALE_S)
            for raw in members:
                lead_id = _text(raw)
                entry = self.ledger.get(lead_id)
                if entry.get("state") != state or "updated_at" not in entry:
                    continue
                if state == LeadState.IN_FLIGHT:
                    if float(entry.get("lease_until") or 0) > now:
                        continue
                elif (float(entry.get("retry_at") or 0) > now - STALE_S
                      or self.schedule.due_at(lead_id) is not None):
                    continue
                if self.ledger.message(lead_id) is None:
                    continue
                out[lead_id] = entry
        return out

    def _present(self, stuck: dict[str, dict[str, str]]) -> set[str]:
        """Which of the stuck leads still have a message on the list or in `unacked`."""
        needles = {lead_id: [lead_id.encode(), *([entry["task_id"].encode()]
                                                 if entry.get("task_id") else [])]
                   for lead_id, entry in stuck.items()}
        found: set[str] = set()

        def search(blobs: list[Any]) -> None:
            for blob in blobs:
                data = blob if isinstance(blob, bytes) else str(blob).encode()
                for lead_id, words in needles.items():
                    if lead_id not in found and any(word in data for word in words):
                        found.add(lead_id)

        for name in queue_lists(LEADS_QUEUE):  # every priority list of `leads`
            start = 0
            while True:
                page = self.redis.lrange(name, start, start + PAGE - 1)
                search(page)
                if len(page) < PAGE:
                    break
                start += PAGE
        cursor = 0
        while True:
            cursor, fields = self.redis.hscan(self.unacked_key, cursor, count=PAGE)
            search(list(fields.values()) if isinstance(fields, dict) else list(fields))
            if not cursor:
                break
        return found
