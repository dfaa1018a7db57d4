"""Parked leads: waiting for a person to re-authorize (or fix LEADSYNC_TOKEN_KEY), or for
tomorrow's quota.

A parked lead is out of the broker (its message is acknowledged only after the park is written)
and sits in a sorted set scored by the earliest time it may resume. The beat task
`leadsync.resume_parked` puts due leads back on the `leads` queue: quota leads at 00:00 UTC,
re-authorization leads as soon as sending is possible again. Moving a lead in or out is one
ledger step (worker/lua/ledger.lua), so it is always in exactly one place.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from worker.base.redis_text import text
from worker.base.scope import Scope
from worker.leads.lead import Lead, parse_lead
from worker.leads.wire import encode_message
from worker.ledger.ledger import Ledger, Side

REAUTH = "reauth"
QUOTA = "quota"
TOKEN_KEY = "token_key"  # LEADSYNC_TOKEN_KEY cannot open the tokens: resume once it can
REASONS = (REAUTH, QUOTA, TOKEN_KEY)


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

    def park(self, lead: Lead, reason: str, resume_at: float, *, attempts: int = 0,
             now: float | None = None) -> tuple[bool, str]:
        """Park the lead (one ledger step); (False, state) if it settled meanwhile."""
        if reason not in REASONS:
            raise ValueError(f"unknown park reason {reason!r}")
        now = time.time() if now is None else now
        entry = json.dumps({"lead": lead.to_json_dict(), "reason": reason,
                            "resume_at": resume_at, "parked_at": now, "attempts": attempts})
        return self.ledger.move(lead.lead_id, "park", now=now,
                                side=Side(self.keys.parked_index, self.keys.parked, entry,
                                          resume_at),
                                park_reason=reason, resume_at=resume_at)

    def entries(self) -> list[Parked]:
        out = []
        for raw in self.redis.hvals(self.keys.parked_index):
            data: dict[str, Any] = json.loads(raw)
            out.append(Parked(parse_lead(data["lead"]), data["reason"], float(data["resume_at"]),
                              float(data["parked_at"]), int(data.get("attempts", 0))))
        return out

    def counts(self) -> dict[str, Any]:
        """Parked leads by reason and the next resume time (for `leadsync status`)."""
        by_reason = dict.fromkeys(REASONS, 0)
        next_resume: dict[str, float] = {}
        for raw in self.redis.hvals(self.keys.parked_index):
            data = json.loads(raw)
            reason = data.get("reason", "?")
            by_reason[reason] = by_reason.get(reason, 0) + 1
            at = float(data.get("resume_at", 0))
            next_resume[reason] = min(next_resume.get(reason, at), at)
        return {"by_reason": by_reason, "next_resume_at": next_resume}

    def resume_due(self, *, sending_possible: bool, now: float | None = None) -> int:
        """Put due leads back on the queue; reauth leads only when sending is possible."""
        now = time.time() if now is None else now
        resumed = 0
        for raw_id in self.redis.zrangebyscore(self.keys.parked, "-inf", now):
            lead_id = text(raw_id)
            raw = self.redis.hget(self.keys.parked_index, lead_id)
            if raw is None:
                self.redis.zrem(self.keys.parked, lead_id)
                continue
            data = json.loads(raw)
            if data.get("reason") in (REAUTH, TOKEN_KEY) and not sending_possible:
                continue
            resumed += self._requeue(lead_id, parse_lead(data["lead"]), now)
        return resumed

    def _requeue(self, lead_id: str, lead: Lead, now: float) -> int:
        """One ledger step: only a lead still parked moves (one resumer wins), pushed with it."""
        moved, _state = self.ledger.move(
            lead_id, "resume", now=now, message=encode_message(lead),
            side=Side(self.keys.parked_index, self.keys.parked, None))
        if not moved:  # resumed by another beat run, or settled: drop a stale parked entry
            pipe = self.redis.pipeline(transaction=True)
            pipe.zrem(self.keys.parked, lead_id)
            pipe.hdel(self.keys.parked_index, lead_id)
            pipe.execute()
        return int(moved)
