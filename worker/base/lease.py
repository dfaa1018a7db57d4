"""Keep held Redis locks' short leases alive while their holders work (one renewer per process).

A lock whose TTL is as long as the work could take outlives a dead holder (kill -9, OOM) by
all of it. So locks take a short lease instead and the holding process extends it every
`every_s` while the work runs, never past `hold_s` in all: a dead holder's lock is free within
one lease. Only the owner token may extend it (Lua); a renewal that finds the lock gone stops
for good and never takes it back. Used by the per-email lock (worker/delivery/email_lock.py)
and the refresh lock (worker/auth/lock.py).

One daemon thread per process (`LeaseKeeper`) serves every lease the process holds: a thread
started per lock cost more than a lead's Redis work. It ticks at the shortest `every_s` held
and renews the leases that are due, so a lock held for milliseconds costs a dictionary entry,
not a wake-up; a renewal is at most one tick late. A forked child starts its own keeper
(threads do not survive fork).
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from typing import Protocol

from redis.exceptions import LockError, RedisError
from redis.lock import Lock

log = logging.getLogger("leadsync.lease")


class Renewable(Protocol):
    def renew(self, lease_s: float) -> bool:
        """Reset the lock's TTL to `lease_s` if still owned: False when it is not (lost)."""
        ...


class RedisLockLease:
    """redis-py's `Lock` as a `Renewable` (its extend raises LockError when not owned)."""

    def __init__(self, lock: Lock) -> None:
        self.lock = lock

    def renew(self, lease_s: float) -> bool:
        try:
            self.lock.extend(lease_s, replace_ttl=True)
        except LockError:
            return False
        return True


class Lease:
    """One held lock's renewals: stop them with `stop()` before releasing the lock."""

    def __init__(self, lock: Renewable, *, lease_s: float, every_s: float, hold_s: float,
                 what: str, keeper: LeaseKeeper) -> None:
        self.lock, self.lease_s, self.every_s, self.what = lock, lease_s, every_s, what
        self.deadline = time.monotonic() + hold_s
        self.next_at = time.monotonic() + every_s
        self.keeper = keeper
        self.entry = next(keeper.seq)
        self.stopped = False
        self.lost = False

    def stop(self) -> None:
        self.keeper.remove(self)


class LeaseKeeper(threading.Thread):
    """This process's renewer: extends each held lease until stopped, lost, or its `hold_s`."""

    def __init__(self) -> None:
        super().__init__(name="leadsync-lease-keeper", daemon=True)
        self.pid = os.getpid()
        self.cond = threading.Condition()
        self.held: dict[int, Lease] = {}
        self.seq = itertools.count()
        self.tick_s: float | None = None  # None: idle, waiting to be told of a lease

    @classmethod
    def start_for(cls, lock: Renewable | Lock, *, lease_s: float, every_s: float,
                  hold_s: float, what: str) -> Lease:
        """Renew `lock` (a Renewable, or redis-py's Lock) from now on; `stop()` the answer."""
        renewable = RedisLockLease(lock) if isinstance(lock, Lock) else lock
        return _keeper().keep(renewable, lease_s=lease_s, every_s=every_s, hold_s=hold_s,
                              what=what)

    def keep(self, lock: Renewable, *, lease_s: float, every_s: float, hold_s: float,
             what: str) -> Lease:
        lease = Lease(lock, lease_s=lease_s, every_s=every_s, hold_s=hold_s, what=what,
                      keeper=self)
        with self.cond:
            self.held[lease.entry] = lease
            if self.tick_s is None or every_s < self.tick_s:
                self.cond.notify()  # idle, or this lease needs a faster tick
        return lease

    def remove(self, lease: Lease) -> None:
        with self.cond:
            lease.stopped = True
            self.held.pop(lease.entry, None)

    def run(self) -> None:
        while True:
            with self.cond:
                self.tick_s = min((lease.every_s for lease in self.held.values()), default=None)
                self.cond.wait(self.tick_s)
                now = time.monotonic()
                due = [lease for lease in self.held.values() if lease.next_at <= now]
            for lease in due:
                keep = self._renew(lease)
                with self.cond:
                    if lease.stopped:
                        continue  # let go meanwhile
                    if keep:
                        lease.next_at = time.monotonic() + lease.every_s
                    else:
                        self.held.pop(lease.entry, None)

    @staticmethod
    def _renew(lease: Lease) -> bool:
        """True to keep renewing this lease."""
        remaining = lease.deadline - time.monotonic()
        if remaining <= 0:
            return False  # the longest hold is reached: let the lease run out
        try:
            if not lease.lock.renew(min(lease.lease_s, remaining)):
                lease.lost = True
                if not lease.stopped:
                    log.warning("%s lost while held (expired before renewal)", lease.what)
                return False
        except RedisError:
            pass  # Redis blinked: try again before the lease runs out
        return True


_state: dict[str, LeaseKeeper] = {}
_state_lock = threading.Lock()


def _keeper() -> LeaseKeeper:
    """This process's keeper (a forked child starts its own)."""
    with _state_lock:
        current = _state.get("keeper")
        if current is None or current.pid != os.getpid():
            current = _state["keeper"] = LeaseKeeper()
            current.start()
        return current

