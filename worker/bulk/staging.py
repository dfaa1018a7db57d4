"""The delivery hook: a lead without consent, while bulk is active, is staged for an import.

Staging is one ledger step (`stage`: in_flight -> staged) that also adds the lead to the staged
set with its list ids (the step's side entry), so the lead is durably waiting for a batch before
its message is acknowledged; the ledger keeps the message the batch is built from. Consented
leads never take this path: an import gives new contacts implicit permission, while a lead who
ticked the box has given explicit permission, which only `sign_up_form` records.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from redis.exceptions import RedisError

from worker.base.names import LEADS_QUEUE
from worker.base.priority import queue_lists
from worker.base.scope import Scope
from worker.bulk.plan import note_consented, quota_plan
from worker.bulk.rows import group_key
from worker.delivery.ratelimit import FleetLimiter
from worker.leads.lead import Lead
from worker.ledger.ledger import Ledger, Side

STAY_ON_S = 30.0  # auto mode stays on this long after the last staging (the backlog's tail)
PLAN_EVERY_S = 5.0  # the quota plan is read at most this often per process
# Consented leads are counted here and written with the next one at least this long after the
# last write (a write per lead cost a round trip per lead): the rate estimate misses at most
# this long of leads per process (those before it dies or goes idle).
NOTE_EVERY_S = 5.0


class BulkGate:
    """Delivery's `StagingGate` (worker/delivery/gate.py), handed to it by the Account."""

    def __init__(self, scope: Scope, ledger: Ledger, limiter: FleetLimiter, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.scope = scope
        self.settings = scope.settings
        self.redis = scope.redis
        self.ledger = ledger
        self.limiter = limiter
        self.keys = scope.keys.bulk
        self.clock = clock
        self._plan_at = -1e18
        self._plan_says_bulk = False
        self._consented: dict[int, int] = {}  # minute -> consented leads not yet written
        self._noted_at = -1e18

    def may_stage(self, lead: Lead) -> bool:
        """False when `wants` is sure to say no, without asking Redis (consent, bulk off)."""
        return self.settings.bulk != "off" and not lead.consent

    def wants(self, lead: Lead) -> bool:
        """True when this lead should be staged (never for consented leads)."""
        if self.settings.bulk == "off":
            return False
        if lead.consent:
            self._note_consented(self.clock())
            return False
        if not (lead.list_ids or self.settings.list_ids):
            return False  # the single path dead-letters it, naming the missing lists
        return self.on()

    def on(self) -> bool:
        """Whether leads without consent go to imports now (the backlog stager asks too)."""
        mode = self.settings.bulk
        if mode != "auto":
            return mode == "always"
        try:
            return self._active(self.clock())
        except RedisError:  # Redis away: the single path waits for it as it always did
            return False

    def _note_consented(self, now: float) -> None:
        minute = int(now // 60)
        self._consented[minute] = self._consented.get(minute, 0) + 1
        if now - self._noted_at < NOTE_EVERY_S:
            return
        self._noted_at = now
        counts, self._consented = self._consented, {}
        with contextlib.suppress(Exception):  # the observed rate only sizes the reserve
            for at, count in counts.items():
                note_consented(self.scope, at * 60.0, count)

    def _active(self, now: float) -> bool:
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self.keys.active_until)
        pipe.zcard(self.keys.staged)
        for name in queue_lists(LEADS_QUEUE):  # every priority list of `leads`
            pipe.llen(name)
        until, staged, *queued = pipe.execute()
        active = ((until is not None and float(until) > now)
                  or sum(int(n) for n in queued) + int(staged) >= self.settings.bulk_threshold
                  or self._plan_wants_bulk(now))
        # Keep auto mode on for STAY_ON_S more; refreshed at most once a second, not per lead.
        if active and (until is None or float(until) < now + STAY_ON_S - 1.0):
            self.redis.set(self.keys.active_until, f"{now + STAY_ON_S:.3f}",
                           ex=int(STAY_ON_S) + 5)
        return active

    def _plan_wants_bulk(self, now: float) -> bool:
        if now - self._plan_at >= PLAN_EVERY_S:
            self._plan_at = now
            self._plan_says_bulk = not quota_plan(self.scope, self.limiter,
                                                  now=now).single_would_finish
        return self._plan_says_bulk

    def stage(self, lead: Lead) -> tuple[bool, str]:
        """in_flight -> staged with the staged-set entry, one ledger step."""
        now = self.clock()
        return self.ledger.move(lead.lead_id, "stage", now=now, side=self._entry(lead, now))

    def stage_many(self, leads: list[Lead]) -> list[tuple[bool, str]]:
        """`stage` for each lead, in one round trip."""
        now = self.clock()
        return self.ledger.move_many("stage", [(lead.lead_id, self._entry(lead, now))
                                               for lead in leads], now=now)

    def _entry(self, lead: Lead, now: float) -> Side:
        """The staged-set entry (scored by now) with the batch group of the lead's lists."""
        list_ids = lead.list_ids or list(self.settings.list_ids)
        return Side(self.keys.groups, self.keys.staged, group_key(list_ids), now)
