"""A lead's Redis work in two round trips: one batch starts it, one step settles a delivery.

Each step used to be a round trip of its own (14.3 per lead measured, with the broker's): the
ledger's begin, the email lock, the ledger re-read under it, two token reads, the limiter, the
move, two counters, the release. Now the start batch (`open_lead`) sends the ledger's `begin`,
which also takes the email lock when it takes the lead and the lock is free (one script: a lead
taken with its lock needs no re-read, since no copy can have sent meanwhile), one limiter slot,
and, unless this process found the token record stored FRESH_S ago or less
(worker/auth/access.py), a probe of its stored token and state: two or three commands, one
round trip. Settling a delivery (`settle_delivered`) is the `deliver` move, which also adds to
the outcome counters and lets go of the lock in the same script.

A copy that finds the lead settled or held elsewhere takes no lock, and its slot stays unused
(one request's spacing and one count of the daily quota; duplicates are rare). When the lock is
held elsewhere, the lead waits for it and re-reads its state under it, as before. A lead that
may be staged for an import (no consent, bulk on) or has no list starts with the begin alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from worker.auth.access import AccessToken, probe_in, usable_access_token, usable_from_probe
from worker.auth.token_store import TokenStore
from worker.base.scope import Scope
from worker.delivery.email_lock import EmailLock
from worker.delivery.ratelimit import FleetLimiter
from worker.ledger.lead_state import LeadState
from worker.ledger.ledger import STEP, Begin, Ledger, begun, moved, released
from worker.lua import Batch, run_batch


@dataclass
class Opened:
    """What the start batch found."""

    begin: Begin
    lock: EmailLock
    limiter: FleetLimiter
    token_probe: list[Any] | None = None  # the probe's reply, if the batch had one
    probed_at: float = 0.0  # time.monotonic() when the batch was sent
    token_first: bool = False  # the next `token` is the lead's first: from the batch

    def give_back(self) -> None:
        """Nothing (more) to send: let go of the lock and the slot."""
        self.limiter.discard_offer()
        self.lock.release()

    def hold(self, ledger: Ledger, lead_id: str) -> str:
        """Hold the email lock (waiting for it unless `begin` took it); the lead's state
        under it."""
        if self.lock.held:
            return LeadState.IN_FLIGHT  # taken with the lead, in one step: ours since
        self.limiter.discard_offer()  # a slot taken before a wait would be sent late
        self.lock.acquire()
        return ledger.state(lead_id)

    def token(self, tokens: TokenStore, wait_s: float) -> AccessToken:
        """The token to send: the first time from the batch's probe (or the kept record, when
        the batch had no probe), read afresh after."""
        if not self.token_first:
            return usable_access_token(tokens, wait_s)
        probe, self.token_probe, self.token_first = self.token_probe, None, False
        return usable_from_probe(tokens, probe, wait_s, probed_at=self.probed_at)


def open_lead(scope: Scope, tokens: TokenStore, ledger: Ledger, limiter: FleetLimiter, *,
              lead_id: str, task_id: str, message: str, lease_s: float, lock: EmailLock,
              send: bool) -> Opened:
    """Begin the lead; with `send`, also take the lock, a slot and (unless the kept record
    stands for it) the token probe: one batch.

    Safe to send again (worker/ledger/durable.py does, when Redis blinks): `begin` by the same
    task id takes the lead again, and a lock an earlier send took is found by its token.
    """
    begin = ledger.begin_call(lead_id, task_id, message, lease_s,
                              claim=lock.claim() if send else None)
    asked_at = 0.0
    probed = False

    def build(batch: Batch) -> None:
        nonlocal asked_at, probed
        batch.script(STEP, **begin)
        if send:
            asked_at = limiter.take_in(batch)
            probed = probe_in(tokens, batch)

    sent_at = time.monotonic()  # before the probe ran: what it found is at least this recent
    replies = run_batch(scope.redis, build)
    opened = Opened(begun(replies[0]), lock, limiter, probed_at=sent_at, token_first=send)
    lock.took(opened.begin.locked)
    if send:
        limiter.offer(replies[1], asked_at)
        opened.token_probe = replies[2] if probed else None
    if opened.begin.outcome != "taken":
        opened.give_back()  # nothing to send
    return opened


def settle_delivered(ledger: Ledger, lock: EmailLock, lead_id: str, *,
                     counters: tuple[str, ...], **fields: Any) -> tuple[bool, str]:
    """The `deliver` move with its counters, letting go of the lock: one script."""
    reply = STEP.run(ledger.redis, **ledger.move_call(
        lead_id, "deliver", counters=counters,
        release=lock.claim() if lock.held else None, **fields))
    if lock.held:
        lock.released(released(reply))
    return moved(reply)
