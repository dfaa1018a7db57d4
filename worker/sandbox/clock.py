"""A clock tests can move: wall time plus an offset, so 24 h and 180 d expiry take no waiting."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime


class Clock:
    def __init__(self) -> None:
        self._offset_s = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        """Epoch seconds on the sandbox's clock."""
        return time.time() + self._offset_s

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        with self._lock:
            self._offset_s += seconds
        return self.now()

    @property
    def offset_s(self) -> float:
        return self._offset_s


def iso(epoch_s: float) -> str:
    """ISO-8601 UTC with milliseconds, as Constant Contact writes timestamps."""
    stamp = datetime.fromtimestamp(epoch_s, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def utc_day(epoch_s: float) -> int:
    """The UTC day number: the daily quota resets when it changes (00:00 UTC)."""
    return int(epoch_s // 86_400)
