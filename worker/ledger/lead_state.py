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
    STAGED = "staged"  # waiting in a bulk import batch (worker/bulk/); its message is kept


ABSENT = ""  # no ledger entry yet (a lead pushed by a producer and never seen)

SETTLED = frozenset({LeadState.DELIVERED, LeadState.DEAD_LETTERED})
# A redelivered copy of a lead in one of these has nothing to do (parked waits for resume).
NOTHING_TO_DO = SETTLED | {LeadState.PARKED, LeadState.STAGED}
# Counted from sorted sets by `leadsync status` and searched by the reconciler.
INDEXED = (LeadState.IN_FLIGHT, LeadState.RETRYING)

_OPEN = (ABSENT, LeadState.QUEUED, LeadState.IN_FLIGHT, LeadState.RETRYING)
# A staged lead is settled by its import (deliver / dead) or sent back (retry); never begun.
_OPEN_OR_STAGED = (*_OPEN, LeadState.STAGED)

# operation -> (states it may start from, state it leads to). `begin` also needs the lease
# rule (an in_flight lead is taken only when its lease ran out or by the same task id).
TRANSITIONS: dict[str, tuple[tuple[str, ...], LeadState]] = {
    "begin": (_OPEN, LeadState.IN_FLIGHT),
    "deliver": (_OPEN_OR_STAGED, LeadState.DELIVERED),
    "retry": (_OPEN_OR_STAGED, LeadState.RETRYING),
    "park": (_OPEN, LeadState.PARKED),
    "dead": (_OPEN_OR_STAGED, LeadState.DEAD_LETTERED),
    # A lead without consent handed to the bulk path (worker/bulk/staging.py).
    "stage": ((LeadState.IN_FLIGHT,), LeadState.STAGED),
    "promote": ((LeadState.RETRYING, LeadState.IN_FLIGHT), LeadState.QUEUED),
    "requeue": ((LeadState.IN_FLIGHT, LeadState.RETRYING), LeadState.QUEUED),
    # A parked entry of an older version outlived its ledger entry (LEADSYNC_OUTCOME_TTL_S);
    # parked leads are kept without a TTL now: resume works on both.
    "resume": ((LeadState.PARKED, ABSENT), LeadState.QUEUED),
    # A dead letter outlives its ledger entry (LEADSYNC_OUTCOME_TTL_S): replay works on both.
    "replay": ((LeadState.DEAD_LETTERED, ABSENT), LeadState.QUEUED),
}


def allowed(operation: str, state: str) -> bool:
    """True when `operation` may move a lead that is now in `state` (ABSENT for none)."""
    sources, _target = TRANSITIONS[operation]
    return state in sources
