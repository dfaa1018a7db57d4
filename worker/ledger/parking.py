"""Parked leads: waiting for a person to re-authorize (or fix LEADSYNC_TOKEN_KEY), or for
tomorrow's quota.

A parked lead is out of the broker (its message is acknowledged only after the park is written)
and sits in one sorted set per reason, scored by the earliest time it may resume, with its entry
in a hash beside them; its ledger entry keeps the message that re-sends it, without a TTL while
it waits. The beat task `leadsync.resume_parked` puts due leads back: quota leads at 00:00 UTC,
re-authorization leads as soon as sending is possible again. Parking is one ledger step
(worker/lua/ledger.lua); resuming is one step per batch of leads
(worker/lua/resume_parked.lua), each lead's kept message pushed onto the list its priority
names with its removal, so a lead is always in exactly one place.

The counts `leadsync status` shows are the sizes of the per-reason sets: kept by the same steps
that park and resume, never a scan. If they disagree with the entries (a Redis restored from
files written partly by an older version that kept one set for every reason, or index keys
deleted by hand), `recount` pages through the entries and puts each lead back in the set its
entry names (worker/lua/parked_repair.lua, atomic per page); `counts` and `resume_due` do so by
themselves when the sizes do not add up, and `resume_due` once an hour regardless (errors that
cancel out leave the sizes right).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from worker.base.errors import LeadsyncError
from worker.base.names import LEADS_QUEUE
from worker.base.priority import queue_lists
from worker.base.redis_text import text
from worker.base.scope import Scope
from worker.leads.lead import Lead, parse_lead
from worker.leads.wire import encode_message
from worker.ledger.lead_state import ABSENT, TRANSITIONS, LeadState
from worker.ledger.ledger import Ledger, Side
from worker.lua import EncodableArg, script

REAUTH = "reauth"
QUOTA = "quota"
TOKEN_KEY = "token_key"  # LEADSYNC_TOKEN_KEY cannot open the tokens: resume once it can
REASONS = (REAUTH, QUOTA, TOKEN_KEY)  # the first also takes entries of an unknown reason
RESUME_BATCH = 200  # leads per resume step: Redis is held ≈ 10 ms (40–60 µs a lead)
REPAIR_PAGE = 200  # SCAN COUNT hint per recount step (a page decodes each entry)
RECOUNT_EVERY_S = 3_600  # a full recount from `resume_due` at most this often, fleet-wide
log = logging.getLogger("leadsync.parking")


@dataclass(frozen=True)
class Parked:
    lead: Lead
    reason: str
    resume_at: float
    parked_at: float
    attempts: int


class ParkingLot:
    def __init__(self, scope: Scope, ledger: Ledger) -> None:
        self.redis = scope.redis
        self.keys = scope.keys
        self.ledger = ledger
        self.ttl_s = int(scope.settings.outcome_ttl_s)
        self.due_keys = {reason: self.keys.parked_due(reason) for reason in REASONS}
        # The index keys the repair script sees: entries, the old single set, one set a reason.
        self._indexes = [self.keys.parked_index, self.keys.parked, *self.due_keys.values()]

    def park(self, lead: Lead, reason: str, resume_at: float, *, attempts: int = 0,
             now: float | None = None) -> tuple[bool, str]:
        """Park the lead (one ledger step); (False, state) if it settled meanwhile."""
        if reason not in REASONS:
            raise ValueError(f"unknown park reason {reason!r}")
        now = time.time() if now is None else now
        entry = json.dumps({"lead": lead.to_json_dict(), "reason": reason,
                            "resume_at": resume_at, "parked_at": now, "attempts": attempts})
        return self.ledger.move(lead.lead_id, "park", now=now,
                                side=Side(self.keys.parked_index, self.due_keys[reason], entry,
                                          resume_at),
                                park_reason=reason, resume_at=resume_at)

    def entries(self) -> list[Parked]:
        """Every parked lead, decoded (tests and tooling: `counts` does not read them)."""
        out = []
        for raw in self.redis.hvals(self.keys.parked_index):
            data: dict[str, Any] = json.loads(raw)
            out.append(Parked(parse_lead(data["lead"]), data["reason"], float(data["resume_at"]),
                              float(data["parked_at"]), int(data.get("attempts", 0))))
        return out

    def counts(self) -> dict[str, Any]:
        """Parked leads by reason and each reason's next resume time (for `leadsync status`):
        the sizes and first members of the per-reason sets, recounted if they do not add up."""
        snapshot = self._snapshot()
        if not snapshot.consistent:
            self.recount(legacy_only=snapshot.legacy_only)
            snapshot = self._snapshot()
        return {"by_reason": snapshot.by_reason, "next_resume_at": snapshot.next_resume_at}

    def recount(self, *, legacy_only: bool = False) -> int:
        """Put every parked lead in the set its entry names, and drop set members without an
        entry, one SCAN page per atomic step; returns how many memberships changed.
        `legacy_only` moves only what the single set of older versions still holds."""
        sources = ["2"] if legacy_only else ["entries",
                                             *map(str, range(2, len(self._indexes) + 1))]
        changed = 0
        for source in sources:
            cursor = "0"
            while True:
                reply = script("parked_repair").run(self.redis, self._indexes, [
                    source, cursor, REPAIR_PAGE, ",".join(REASONS)])
                cursor, changed = text(reply[0]), changed + int(reply[1])
                if cursor == "0":
                    break
        if changed:
            log.warning("parked leads: %d index entries did not match the parked entries and "
                        "were recounted", changed)
        return changed

    def resume_due(self, *, sending_possible: bool, now: float | None = None,
                   batch: int = RESUME_BATCH) -> int:
        """Put due leads back on the queue, `batch` per step; reauth and token_key leads only
        when sending is possible. Returns how many were resumed."""
        now = time.time() if now is None else now
        snapshot = self._snapshot()
        if not snapshot.consistent:  # parked by an older version, or the sets were lost
            self.recount(legacy_only=snapshot.legacy_only)
        elif self.redis.set(self.keys.parked_recounted, f"{now:.0f}", nx=True,
                            ex=RECOUNT_EVERY_S):
            # Sizes that add up can still hide errors that cancel out (a member without an
            # entry beside an entry in no set): once an hour, fleet-wide, look at each lead.
            self.recount()
        resumed = 0
        for reason in REASONS:
            if reason == QUOTA or sending_possible:
                resumed += self._resume_reason(reason, now, batch)
        return resumed

    # --- internals -------------------------------------------------------------------------
    def _snapshot(self) -> _Snapshot:
        pipe = self.redis.pipeline(transaction=True)  # one consistent view
        pipe.hlen(self.keys.parked_index)
        pipe.zcard(self.keys.parked)
        for key in self.due_keys.values():
            pipe.zcard(key)
            pipe.zrange(key, 0, 0, withscores=True)
        entries, legacy, *per_reason = pipe.execute()
        by_reason, next_resume = {}, {}
        for n, reason in enumerate(REASONS):
            by_reason[reason] = int(per_reason[2 * n])
            if per_reason[2 * n + 1]:
                next_resume[reason] = float(per_reason[2 * n + 1][0][1])
        return _Snapshot(int(entries), int(legacy), by_reason, next_resume)

    def _resume_reason(self, reason: str, now: float, batch: int) -> int:
        resumed, stuck = 0, 0
        while True:
            reply = self._resume_step(reason, now, batch=batch, skip=stuck)
            resumed += int(reply[0])
            missing = [text(lead_id) for lead_id in reply[3:]]
            if missing:  # parked by an older version, which dropped the message: build it
                moved, unreadable = self._resume_rebuilt(reason, now, missing)
                resumed, stuck = resumed + moved, stuck + unreadable
            if int(reply[2]) < batch:
                return resumed

    def _resume_rebuilt(self, reason: str, now: float, lead_ids: list[str]) -> tuple[int, int]:
        """Resume leads that have no kept message with one built from their entry; returns
        (resumed, left parked because the entry cannot be read as a lead)."""
        pairs: list[str] = []
        unreadable = 0
        for lead_id, raw in zip(lead_ids, self.redis.hmget(self.keys.parked_index, lead_ids),
                                strict=True):
            if raw is None:  # resumed by another run meanwhile
                continue
            try:
                pairs += [lead_id, encode_message(parse_lead(json.loads(raw)["lead"]))]
            except (TypeError, ValueError, KeyError, LeadsyncError):
                unreadable += 1
        if unreadable:
            log.error("parked leads: %d entries of reason %s have no message and cannot be read "
                      "as a lead; left parked", unreadable, reason)
        if not pairs:
            return 0, unreadable
        return int(self._resume_step(reason, now, pairs=pairs)[0]), unreadable

    def _resume_step(self, reason: str, now: float, *, batch: int = 0, skip: int = 0,
                     pairs: list[str] | None = None) -> list[Any]:
        """One call of worker/lua/resume_parked.lua: up to `batch` due leads after the first
        `skip`, or exactly the leads of `pairs` (lead_id, message to push if none is kept)."""
        sources, _target = TRANSITIONS["resume"]
        keys = [self.keys.parked_index, self.due_keys[reason],
                self.keys.lead_state_index(LeadState.IN_FLIGHT),
                self.keys.lead_state_index(LeadState.RETRYING), self.keys.schedule,
                *queue_lists(LEADS_QUEUE)]
        args: list[EncodableArg] = [
            f"{now:.3f}", self.ttl_s, batch, skip, self.keys.lead_prefix,
            self.keys.lead_message_prefix,
            ",".join("-" if s == ABSENT else str(s) for s in sources), *(pairs or [])]
        reply: list[Any] = script("resume_parked").run(self.redis, keys, args)
        return reply


@dataclass(frozen=True)
class _Snapshot:
    entries: int
    legacy: int  # still in the single set of older versions
    by_reason: dict[str, int]
    next_resume_at: dict[str, float]

    @property
    def consistent(self) -> bool:
        return not self.legacy and sum(self.by_reason.values()) == self.entries

    @property
    def legacy_only(self) -> bool:
        """Only the old single set needs emptying (the other sets add up with it)."""
        return sum(self.by_reason.values()) + self.legacy == self.entries


def priority_lists(queue: str) -> list[str]:
    """The Redis lists kombu reads for `queue`, one per priority step (its `_q_for_pri`)."""
    return list(queue_lists(queue))
