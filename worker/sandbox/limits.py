"""Per-client request limits: N per second (sliding or fixed window) and a daily UTC quota.

The real burst behaviour is undocumented, so the default is the strictest reasonable reading:
no more than N admitted requests in any 1-second span, counted at arrival. Refused requests do
not count, so a client that backs off recovers within a second.
"""

from __future__ import annotations

from collections import deque

from worker.sandbox.clock import utc_day


class WindowLimiter:
    def __init__(self, per_s: float, window: str = "sliding") -> None:
        self.per_s = per_s
        self.window = window
        self._hits: dict[str, deque[float]] = {}
        self._fixed: dict[str, tuple[int, int]] = {}

    def admit(self, key: str, now: float) -> bool:
        """True (and counted) when one more request fits; 0 means no limit."""
        if self.per_s <= 0:
            return True
        allowed = max(int(self.per_s), 1)
        if self.window == "fixed":
            second = int(now)
            start, count = self._fixed.get(key, (second, 0))
            if start != second:
                start, count = second, 0
            if count >= allowed:
                return False
            self._fixed[key] = (start, count + 1)
            return True
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - 1.0:
            hits.popleft()
        if len(hits) >= allowed:
            return False
        hits.append(now)
        return True

    def clear(self) -> None:
        self._hits.clear()
        self._fixed.clear()


class DailyQuota:
    """Requests per client per UTC day of the sandbox clock; resets at 00:00 UTC."""

    def __init__(self, per_day: int) -> None:
        self.per_day = per_day
        self._used: dict[str, tuple[int, int]] = {}

    def used(self, key: str, now: float) -> int:
        day, count = self._used.get(key, (utc_day(now), 0))
        return count if day == utc_day(now) else 0

    def set_used(self, key: str, now: float, count: int) -> None:
        self._used[key] = (utc_day(now), count)

    def admit(self, key: str, now: float) -> bool:
        if self.per_day <= 0:
            return True
        count = self.used(key, now)
        if count >= self.per_day:
            return False
        self._used[key] = (utc_day(now), count + 1)
        return True

    def clear(self) -> None:
        self._used.clear()
