"""The per-lead ledger: one Redis hash per `lead_id` that says where the lead is.

A lead is in exactly one `LeadState` at a time (worker/ledger/lead_state.py). Every move is one call
of worker/lua/ledger.lua, which checks the move against `TRANSITIONS` and makes it together
with what goes with it (schedule entry, dead letter, parked entry, push back to the queue), so
a concurrent duplicate can never overwrite `delivered` and send again. `begin` takes a lead
for one task with a lease; while a lead is not settled its hash keeps the message that re-sends
it (the schedule, the promoter and the reconciler push that), and drops it once settled.
Failed tries are counted here, not by Celery, so waiting never spends the retry budget. A move
can add one to outcome counters (`counters`) in the same step, so they count moves made, exactly;
a `deliver` move counts itself, by the minute (worker/ledger/delivered.py), on every path.
Ledger entries live `LEADSYNC_OUTCOME_TTL_S`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from worker.base.names import LEADS_QUEUE
from worker.base.priority import queue_lists
from worker.base.redis_text import text as _text
from worker.base.scope import Scope
from worker.ledger.delivered import minute_of
from worker.ledger.lead_state import ABSENT, TRANSITIONS, LeadState
from worker.lua import Batch, run_batch, script

STEP = script("ledger")  # worker/lua/ledger.lua: one move, also inside a batch
QUEUE_LISTS = queue_lists(LEADS_QUEUE)  # a message goes back on the list of its priority
LAST_ERRORS_KEPT = 20


@dataclass(frozen=True)
class Begin:
    """What `Ledger.begin` found: taken (send it), busy elsewhere, or nothing to do."""

    outcome: str  # taken | busy | settled
    state: str  # the state found (settled), or in_flight
    attempts: int = 0  # failed tries so far (taken)
    lease_until: float | None = None  # the holder's lease end (busy)
    locked: bool = False  # taken with a Claim: the lock was free and is held now


@dataclass(frozen=True)
class Claim:
    """A lock taken by `begin` with the lead, if free, and let go by the lead's next move (in
    the same step: no order between the two to get wrong). worker/delivery/email_lock.py's."""

    key: str
    token: str
    lease_ms: int = 0


@dataclass(frozen=True)
class Side:
    """An entry written (or, with value None, removed) with the move: a dead letter, say."""

    hash_key: str
    zset_key: str
    value: str | None
    score: float = 0.0


class Ledger:
    """Reads lead states and moves them, each move one Lua call."""

    def __init__(self, scope: Scope) -> None:
        self.redis = scope.redis
        self.keys = scope.keys
        self.ttl_s = int(scope.settings.outcome_ttl_s)
        self._step = STEP.register(scope.redis)  # EVALSHA, reloaded on NOSCRIPT

    def get(self, lead_id: str) -> dict[str, str]:
        raw = self.redis.hgetall(self.keys.lead_outcome(lead_id))
        return {_text(k): _text(v) for k, v in raw.items()}

    def state(self, lead_id: str) -> str:
        """The lead's state, ABSENT ("") when the ledger has never seen it."""
        return _text(self.redis.hget(self.keys.lead_outcome(lead_id), "state") or b"")

    def message(self, lead_id: str) -> str | None:
        """The message kept to re-send an unsettled lead (None once settled)."""
        raw = self.redis.get(self.keys.lead_message(lead_id))
        return None if raw is None else _text(raw)

    def begin(self, lead_id: str, task_id: str, message: str, lease_s: float, *,
              now: float | None = None) -> Begin:
        """Take the lead for `task_id` until now + lease_s, keeping `message` to re-send it."""
        return begun(self._step(**self.begin_call(lead_id, task_id, message, lease_s, now=now)))

    def begin_call(self, lead_id: str, task_id: str, message: str, lease_s: float, *,
                   now: float | None = None, claim: Claim | None = None) -> dict[str, list[Any]]:
        """`begin` as keys and args, for a batch (worker/lua's run_batch); read its reply with
        `begun`. With `claim`, a lead taken takes the lock too when it is free."""
        now = time.time() if now is None else now
        return self._call("begin", lead_id, now, task_id=task_id, until=now + lease_s,
                          message=message, claim=claim)

    def begin_many(self, items: Sequence[tuple[str, str, str]], lease_s: float, *,
                   now: float | None = None) -> list[Begin]:
        """`begin` for each (lead_id, task_id, message), in one round trip (a bulk stager's
        hundreds: one round trip each cost more than the steps themselves)."""
        now = time.time() if now is None else now

        def build(batch: Batch) -> None:
            for lead_id, task_id, message in items:
                batch.script(STEP, **self.begin_call(lead_id, task_id, message, lease_s,
                                                     now=now))

        return [begun(reply) for reply in run_batch(self.redis, build)]

    def move(self, lead_id: str, operation: str, *, now: float | None = None,
             due: float | None = None, message: str = "", side: Side | None = None,
             expect_updated_at: str = "", counters: tuple[str, ...] = (),
             **fields: Any) -> tuple[bool, str]:
        """Apply `operation` (TRANSITIONS); (True, new state) or (False, the state it is in).
        `counters` (stats fields) each gain one when, and only when, the move is made; a
        `deliver` counts itself (worker/ledger/delivered.py): `delivered` is no counter here."""
        return moved(self._step(**self.move_call(
            lead_id, operation, now=now, due=due, message=message, side=side,
            expect_updated_at=expect_updated_at, counters=counters, **fields)))

    def move_call(self, lead_id: str, operation: str, *, now: float | None = None,
                  due: float | None = None, message: str = "", side: Side | None = None,
                  expect_updated_at: str = "", counters: tuple[str, ...] = (),
                  release: Claim | None = None, **fields: Any) -> dict[str, list[Any]]:
        """`move` as keys and args, for a batch; read its reply with `moved` (and `released`).
        With `release`, the claim's lock is let go in the same step, moved or not."""
        now = time.time() if now is None else now
        return self._call(operation, lead_id, now, until=due, message=message, side=side,
                          expect=expect_updated_at, counters=counters, claim=release,
                          fields=fields)

    def move_many(self, operation: str, moves: Sequence[tuple[str, Side | None]], *,
                  now: float | None = None, **fields: Any) -> list[tuple[bool, str]]:
        """`move(lead_id, operation, side=side, **fields)` for each (lead_id, side), in one
        round trip."""
        now = time.time() if now is None else now

        def build(batch: Batch) -> None:
            for lead_id, side in moves:
                batch.script(STEP, **self._call(operation, lead_id, now, side=side,
                                                fields=fields))

        return [moved(reply) for reply in run_batch(self.redis, build)]

    def _call(self, operation: str, lead_id: str, now: float, *, task_id: str = "",
              until: float | None = None, message: str = "", side: Side | None = None,
              expect: str = "", counters: tuple[str, ...] = (), claim: Claim | None = None,
              fields: dict[str, Any] | None = None) -> dict[str, list[Any]]:
        sources, target = TRANSITIONS[operation]
        keys = [self.keys.lead_outcome(lead_id), self.keys.lead_state_index(LeadState.IN_FLIGHT),
                self.keys.lead_state_index(LeadState.RETRYING), self.keys.schedule,
                self.keys.delivered_minutes, QUEUE_LISTS[0],
                side.hash_key if side else self.keys.dead_letters,
                side.zset_key if side else self.keys.dead_letter_index,
                self.keys.lead_message(lead_id), *QUEUE_LISTS[1:], self.keys.stats,
                claim.key if claim else self.keys.lead_outcome(lead_id)]
        side_value = "" if side is None else ("-" if side.value is None else side.value)
        args: list[Any] = [
            operation, lead_id, f"{now:.3f}", self.ttl_s,
            ",".join("-" if s == ABSENT else str(s) for s in sources), str(target), task_id,
            "" if until is None else f"{until:.3f}", message, side_value,
            repr(float(side.score)) if side else "0", expect, minute_of(now), ",".join(counters),
            claim.token if claim else "", claim.lease_ms if claim else 0]
        for name, value in (fields or {}).items():
            if value is not None:
                args += [name, _field(value)]
        return {"keys": keys, "args": args}

    def count_attempt(self, lead_id: str) -> int:
        """One more failed try; returns the total."""
        key = self.keys.lead_outcome(lead_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hincrby(key, "attempts", 1)
        pipe.expire(key, self.ttl_s)
        return int(pipe.execute()[0])

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


def begun(reply: list[Any]) -> Begin:
    """What a `begin` step answered."""
    outcome, value = _text(reply[0]), _text(reply[1])
    if outcome == "taken":
        return Begin("taken", LeadState.IN_FLIGHT, attempts=int(value or 0),
                     locked=len(reply) > 2 and int(reply[2]) == 1)
    if outcome == "busy":
        return Begin("busy", LeadState.IN_FLIGHT, lease_until=float(value))
    return Begin("settled", value)


def moved(reply: list[Any]) -> tuple[bool, str]:
    """What a move answered: (True, new state) or (False, the state it is in)."""
    return _text(reply[0]) == "ok", _text(reply[1])


def released(reply: list[Any]) -> bool:
    """Whether a move with `release` found the lock still the claim's (and let it go)."""
    return len(reply) > 2 and int(reply[2]) == 1


def _field(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
