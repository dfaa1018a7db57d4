"""Where a lead is: one vocabulary (`LeadState`) and the one table of allowed moves.

The ledger's Lua script (worker/lua/ledger.lua) is handed the allowed "from" states of each
operation from `TRANSITIONS`, so this table is the single source of truth; a test walks every
(operation, state) pair against a real Redis. Settled states (delivered, dead_lettered) are
never left, except dead_lettered -> queued by an operator's replay; parked -> queued only by
resume.
"""

from __future__ import annotations

from enum import StrEnum


class LeadState(StrEnum):
    QUEUED = "queued"
    IN_FLIGHT = "in_flight"
    RETRYING = "retrying"
    PARKED = "parked"
    DELIVERED = "delivered"
    DEAD_LETTERED = "dead_lettered"


ABSENT = ""  # no ledger entry yet (a lead pushed by a producer and never seen)

SETTLED = frozenset({LeadState.DELIVERED, LeadState.DEAD_LETTERED})
# A redelivered copy of a lead in one of these has nothing to do (parked waits for resume).
NOTHING_TO_DO = SETTLED | {LeadState.PARKED}
# Counted from sorted sets by `leadsync status` and searched by the reconciler.
INDEXED = (LeadState.IN_FLIGHT, LeadState.RETRYING)

_OPEN = (ABSENT, LeadState.QUEUED, LeadState.IN_FLIGHT, LeadState.RETRYING)

# operation -> (states it may start from, state it leads to). `begin` also needs the lease
# rule (an in_flight lead is taken only when its lease ran out or by the same task id).
TRANSITIONS: dict[str, tuple[tuple[str, ...], LeadState]] = {
    "begin": (_OPEN, LeadState.IN_FLIGHT),
    "deliver": (_OPEN, LeadState.DELIVERED),
    "retry": (_OPEN, LeadState.RETRYING),
    "park": (_OPEN, LeadState.PARKED),
    "dead": (_OPEN, LeadState.DEAD_LETTERED),
    "promote": ((LeadState.RETRYING, LeadState.IN_FLIGHT), LeadState.QUEUED),
    "requeue": ((LeadState.IN_FLIGHT, LeadState.RETRYING), LeadState.QUEUED),
    "resume": ((LeadState.PARKED,), LeadState.QUEUED),
    # A dead letter outlives its ledger entry (LEADSYNC_OUTCOME_TTL_S): replay works on both.
    "replay": ((LeadState.DEAD_LETTERED, ABSENT), LeadState.QUEUED),
}


def allowed(operation: str, state: str) -> bool:
    """True when `operation` may move a lead that is now in `state` (ABSENT for none)."""
    sources, _target = TRANSITIONS[operation]
    return state in sources
