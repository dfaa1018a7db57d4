"""What one delivery attempt ended in (`Result`) and the one log line each outcome gets.

Kept apart from worker/delivery/run.py so the log line's fields (what operators grep and the
README's "Logs" section lists) live in one small place.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from worker.ledger.lead_state import LeadState

log = logging.getLogger("leadsync.delivery")


@dataclass(frozen=True)
class Result:
    status: LeadState  # where the lead is now
    attempt: int
    countdown_s: float | None = None  # set when status == retrying: due in this many seconds
    spends_budget: bool = False
    detail: dict[str, Any] = field(default_factory=dict)
    duplicate: bool = False  # this copy did nothing: the lead was settled or held elsewhere


def log_outcome(lead_id: str, result: Result, started: float, **extra: Any) -> Result:
    """One INFO line per outcome (WARNING for a dead letter); ids and reasons, no personal data."""
    latency_ms = round((time.monotonic() - started) * 1000, 1)
    fields: dict[str, Any] = {"lead_id": lead_id, "status": str(result.status),
                              "attempt": result.attempt, "latency_ms": latency_ms, **extra}
    fields.update({k: v for k, v in result.detail.items() if v is not None})
    if result.countdown_s is not None:
        fields["countdown_s"] = round(result.countdown_s, 3)
    if result.duplicate:
        fields["duplicate"] = True
    level = logging.WARNING if result.status == LeadState.DEAD_LETTERED else logging.INFO
    summary = " ".join(f"{k}={v}" for k, v in fields.items() if k != "lead_id")
    log.log(level, "lead %s %s", lead_id, summary, extra=fields)
    return result
