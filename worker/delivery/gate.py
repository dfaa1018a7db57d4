"""The bulk path as Delivery sees it: a gate that may take a lead off the single path.

Delivery asks `may_stage(lead)` when it starts a lead (no Redis), `wants(lead)` before it
sends and, when yes, `stage(lead)` instead of sending. worker/bulk/staging.py's `BulkGate` is
the one implementation; the Account hands it to Delivery, so delivery/ never imports bulk/
(bulk/ uses delivery's client and limiter).
"""

from __future__ import annotations

from typing import Protocol

from worker.leads.lead import Lead


class StagingGate(Protocol):
    def may_stage(self, lead: Lead) -> bool:
        """False when `wants` is sure to say no, without asking Redis (a lead that may be
        staged starts with the ledger's begin alone: worker/delivery/lead_steps.py)."""
        ...

    def wants(self, lead: Lead) -> bool:
        """True when this lead should wait for a bulk import instead of being sent alone."""
        ...

    def stage(self, lead: Lead) -> tuple[bool, str]:
        """Move the lead to `staged` (one ledger step): (moved, the state it is in now)."""
        ...
