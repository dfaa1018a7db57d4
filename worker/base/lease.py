"""Keep a held Redis lock's short lease alive while its holder works (one renewer for every lock).

A lock whose TTL is as long as the work could take outlives a dead holder (kill -9, OOM) by
all of it. So locks take a short lease instead and a daemon thread of the holding process
extends it every `every_s` while the work runs, never past `hold_s` in all: a dead holder's
lock is free within one lease. Only the owner token may extend it (redis-py's Lua); a renewal
that finds the lock gone stops for good and never takes it back. Used by the per-email lock
(worker/delivery/email_lock.py) and the refresh lock (worker/auth/lock.py).
"""

from __future__ import annotations

import logging
import threading
import time

from redis.exceptions import LockError, RedisError
from redis.lock import Lock

log = logging.getLogger("leadsync.lease")


class LeaseKeeper(threading.Thread):
    """Extends `lock` to `lease_s` every `every_s` until stopped, lost, or `hold_s` is reached."""

    def __init__(self, lock: Lock, *, lease_s: float, every_s: float, hold_s: float,
                 what: str) -> None:
        super().__init__(name=f"leadsync-{what}-keeper", daemon=True)
        self.lock, self.lease_s, self.every_s, self.what = lock, lease_s, every_s, what
        self.deadline = time.monotonic() + hold_s
        self.done = threading.Event()
        self.lost = False

    def run(self) -> None:
        while not self.done.wait(self.every_s):
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                return  # the longest hold is reached: let the lease run out
            try:
                self.lock.extend(min(self.lease_s, remaining), replace_ttl=True)
            except LockError:
                self.lost = True
                if not self.done.is_set():
                    log.warning("%s lost while held (expired before renewal)", self.what)
                return
            except RedisError:
                continue  # Redis blinked: try again before the lease runs out

    def stop(self) -> None:
        self.done.set()
        self.join(self.lease_s)  # a renewal stuck on a dead socket must not hold up the holder

    @classmethod
    def start_for(cls, lock: Lock, *, lease_s: float, every_s: float, hold_s: float,
                  what: str) -> LeaseKeeper:
        keeper = cls(lock, lease_s=lease_s, every_s=every_s, hold_s=hold_s, what=what)
        keeper.start()
        return keeper
