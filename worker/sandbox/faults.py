"""Injected failures, changeable while the sandbox runs (CLI flags and POST /_sandbox/faults)."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

from worker.sandbox.config import MAX_GRACE_S, SandboxConfig

# How an import can end other than `completed` (facts sheet 4.6): each has a counter, "the next
# N imports end so" (`failed` writes nothing; `timed_out`/`cancelled` the rows done by then).
IMPORT_ENDS = ("failed", "timed_out", "cancelled")
ENDING_FIELDS = tuple(f"{end}_imports" for end in IMPORT_ENDS)
FIELDS = ("fail_rate", "latency_ms", "drop_rate", "timeout_rate", "throttle_burst",
          "conflict_window_ms", *ENDING_FIELDS,
          "daily_quota", "quota_used", "rate_limit_per_s", "token_rate_limit_per_s",
          "refresh_grace_s")


@dataclass
class Faults:
    fail_rate: float = 0.0
    latency_ms: float = 0.0
    drop_rate: float = 0.0
    # A share of requests is carried out but answered only after TIMEOUT_DELAY_S: the client
    # times out not knowing the write happened (the case idempotency exists for).
    timeout_rate: float = 0.0
    throttle_burst: int = 0  # the next N API requests answer 429 throttled
    conflict_window_ms: float = 0.0
    failed_imports: int = 0  # the next N imports end `failed`
    timed_out_imports: int = 0  # ... `timed_out`
    cancelled_imports: int = 0  # ... `cancelled`

    @classmethod
    def from_config(cls, config: SandboxConfig) -> Faults:
        return cls(fail_rate=config.fail_rate, latency_ms=config.latency_ms,
                   drop_rate=config.drop_rate, timeout_rate=config.timeout_rate,
                   conflict_window_ms=config.conflict_window_ms,
                   failed_imports=config.failed_imports,
                   timed_out_imports=config.timed_out_imports,
                   cancelled_imports=config.cancelled_imports)

    def import_end(self) -> str:
        """How the import being created will end: an injected end (spent), else completed."""
        for end in IMPORT_ENDS:
            name = f"{end}_imports"
            if getattr(self, name) > 0:
                setattr(self, name, getattr(self, name) - 1)
                return end
        return "completed"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


TIMEOUT_DELAY_S = 60.0


class FaultDice:
    """Random draws for the share-based faults (seedable for repeatable runs)."""

    def __init__(self, seed: int | None) -> None:
        self._random = random.Random(seed)

    def hit(self, share: float) -> bool:
        return share > 0 and self._random.random() < share

    def server_error(self) -> int:
        return self._random.choice((500, 503))


def parse_faults(body: Any) -> dict[str, float]:
    """Validate a /_sandbox/faults body: known numeric fields only; shares within 0..1."""
    if not isinstance(body, dict):
        raise ValueError("faults must be a JSON object")
    unknown = sorted(set(body) - set(FIELDS) - {"revoke_refresh_tokens"})
    if unknown:
        raise ValueError(f"unknown fault field(s): {', '.join(unknown)}; "
                         f"known: {', '.join(FIELDS)}")
    parsed: dict[str, float] = {}
    for name in FIELDS:
        if name not in body:
            continue
        value = body[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"{name} must be a non-negative number")
        if name in ("fail_rate", "drop_rate", "timeout_rate") and value > 1:
            raise ValueError(f"{name} must be between 0 and 1")
        if name == "refresh_grace_s" and value > MAX_GRACE_S:
            raise ValueError(f"refresh_grace_s must be between 0 and {MAX_GRACE_S:g}")
        parsed[name] = float(value)
    return parsed
