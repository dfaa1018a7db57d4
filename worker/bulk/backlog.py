"""The backlog stager: leads without consent taken off their own list hundreds at a time.

A backlog staged lead by lead costs a `sync_lead` task each: the fetch, the pool, task events
and the ack, about 5 ms of CPU (measured: 5,000 leads staged at 121/s by one worker of 4 on the
shared 2-core machine, 20,000 in close to three minutes). Leads without consent wait on their
own priority list (worker/base/priority.py), so while bulk delivery is on, `leadsync.bulk_import`
also stages them from there itself: one Lua step (worker/lua/bulk_take.lua, for the bulk lock's
holder only) moves TAKE entries to a holding list, each is begun and staged by the same two
ledger steps a worker would use, and the next step drops them from the holding list. A crash
leaves them there for the next holder, whose ledger steps refuse what already moved, so nothing
is lost or staged twice. An entry it would not stage (consent, no list, not a lead) is handed
on to the workers' own list, ahead of the backlog. Workers still take backlog leads meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable

from redis.exceptions import LockError

from worker.base.errors import InvalidLeadError
from worker.base.names import LEADS_QUEUE
from worker.base.priority import BACKLOG_PRIORITY, HANDED_ON_PRIORITY, list_for
from worker.base.scope import Scope
from worker.bulk.staging import BulkGate
from worker.leads.lead import Lead
from worker.leads.wire import encode_message, parse_message
from worker.ledger.ledger import Ledger
from worker.lua import script

log = logging.getLogger("leadsync.bulk")
TAKE = 500  # entries per step: one step's ledger calls stay well inside the lock's TTL
LEASE_S = 60.0  # begin and stage follow each other; a crash between them is picked up again
TAKE_SCRIPT = script("bulk_take")


class BacklogStager:
    def __init__(self, scope: Scope, ledger: Ledger, gate: BulkGate) -> None:
        self.settings = scope.settings
        self.redis = scope.redis
        self.keys = scope.keys.bulk
        self.ledger = ledger
        self.gate = gate
        self._lists = [self.keys.lock, list_for(LEADS_QUEUE, BACKLOG_PRIORITY), self.keys.holding,
                       list_for(LEADS_QUEUE, HANDED_ON_PRIORITY)]

    def run(self, token: bytes, renew: Callable[[], bool], deadline: float) -> int:
        """Stage from the backlog list until it is empty or `deadline` (monotonic) passes, while
        this run holds the lock (`token`, kept by `renew`); returns how many were staged."""
        if not self.gate.on():
            self.give_back()  # a crashed run's entries, now for the workers' single path
            return 0
        staged = handed_on = done = 0
        hand_on: list[bytes] = []
        while True:
            more = time.monotonic() < deadline and renew() and self.gate.on()
            taken = int(TAKE_SCRIPT.run(self.redis, self._lists,
                                        [token, TAKE if more else 0, done, *hand_on]))
            if taken < 0 or not more:
                break  # the lock is lost (its holder goes through what is held), or time is up
            entries: list[bytes] = self.redis.lrange(self.keys.holding, 0, -1)  # type: ignore[assignment]
            if not entries:
                break
            stageable, hand_on = self._sort(reversed(entries))  # the tail (oldest) first
            staged += self._stage(stageable)
            handed_on += len(hand_on)
            done = len(entries)
        if staged or handed_on:
            log.info("bulk: %d leads staged from the backlog list, %d handed on to the workers",
                     staged, handed_on)
        return staged

    def give_back(self) -> int:
        """Entries a crashed run left held go back to the backlog list, oldest at its tail (read
        first); the caller holds the bulk lock. Each LMOVE is atomic: a crash loses nothing."""
        moved = 0
        while self.redis.lmove(self.keys.holding, self._lists[1], "LEFT", "RIGHT") is not None:
            moved += 1
        if moved:
            log.warning("bulk: %d held backlog entries given back to the queue", moved)
        return moved

    def give_back_when_off(self) -> int:
        """With LEADSYNC_BULK=off no bulk task runs: the reconciler gives back what a run that
        crashed before bulk was turned off still holds (under the bulk lock, if it is free)."""
        if self.settings.bulk != "off" or not self.redis.exists(self.keys.holding):
            return 0
        lock = self.redis.lock(self.keys.lock, timeout=60, blocking=False)
        if not lock.acquire():
            return 0
        try:
            return self.give_back()
        finally:
            with contextlib.suppress(LockError):
                lock.release()

    def _sort(self, entries: Iterable[bytes]) -> tuple[list[Lead], list[bytes]]:
        """(leads to stage, entries for the workers: consent, no list, not a lead at all)."""
        leads: list[Lead] = []
        others: list[bytes] = []
        for raw in entries:
            try:
                if len(raw) > self.settings.max_message_bytes:
                    raise InvalidLeadError("too big to read here")  # the guard keeps it aside
                lead = parse_message(raw)
            except InvalidLeadError:
                others.append(raw)
                continue
            if lead.consent or not (lead.list_ids or self.settings.list_ids):
                others.append(raw)
            else:
                leads.append(lead)
        return leads, others

    def _stage(self, leads: list[Lead]) -> int:
        """A worker's two ledger steps for each lead, each step one round trip for all: begin
        (a settled lead or one held elsewhere is left alone), then stage. A task id of its own
        per lead, so a second try after a crash is the same holder and takes it again."""
        begun = self.ledger.begin_many(
            [(lead.lead_id, f"bulk-{lead.lead_id}",
              encode_message(lead, task_id=f"bulk-{lead.lead_id}")) for lead in leads], LEASE_S)
        taken = [lead for lead, begin in zip(leads, begun, strict=True)
                 if begin.outcome == "taken"]
        return sum(moved for moved, _state in self.gate.stage_many(taken)) if taken else 0
