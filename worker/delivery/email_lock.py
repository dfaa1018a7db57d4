"""One writer per email address across the fleet, and no lock outliving a dead holder by much.

Constant Contact answers 409 to simultaneous writes to the same contact (facts sheet 4.3), and a
lookup-then-write (GET then PUT/POST) must not interleave with another worker's. The lock has an
owner token; only the owner extends or releases it (redis-py's compare-and-set Lua scripts).

Its expiry is a short lease (`LEASE_S`) that a thread in the holding process renews while the
work runs, up to `ttl_s` in all. A holder killed mid-write (kill -9, OOM) stops renewing, so the
lock frees itself within one lease, well before the dead worker's message comes back from the
broker (the visibility timeout); with a fixed TTL as long as the work could take, the redelivered
lead waited for minutes behind a lock nobody held.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from redis import Redis
from redis.exceptions import LockError, RedisError
from redis.lock import Lock

from worker.base.errors import EmailBusyError, RedisUnavailableError
from worker.base.keys import Keys
from worker.base.settings import Settings

log = logging.getLogger(__name__)
WAIT_S = 5.0
LEASE_S = 10.0  # a dead holder's lock is free at most this long after its last renewal
RENEWALS_PER_LEASE = 4  # renew every 2.5 s: a renewal may run late by 7.5 s before it matters


def email_key(settings: Settings, email: str) -> str:
    digest = hashlib.sha256(email.lower().encode()).hexdigest()[:32]  # no address in key names
    return Keys(settings.key_prefix, settings.account).email_lock(digest)


class _Renewer(threading.Thread):
    """Extends the lock's lease while its holder works; gives up at the holder's deadline."""

    def __init__(self, lock: Lock, lease_s: float, deadline: float) -> None:
        super().__init__(name="email-lock-renewer", daemon=True)
        self.lock, self.lease_s, self.deadline = lock, lease_s, deadline
        self.done = threading.Event()
        self.lost = False

    def run(self) -> None:
        every = self.lease_s / RENEWALS_PER_LEASE
        while not self.done.wait(every):
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                return  # the longest hold is reached: let the lease run out
            try:
                # Only the owner token may reset the expiry (Lua); never past the deadline.
                self.lock.extend(min(self.lease_s, remaining), replace_ttl=True)
            except LockError:
                self.lost = True
                log.warning("email lock lost while held (expired before renewal)")
                return
            except RedisError:
                continue  # Redis blinked: try again before the lease runs out

    def stop(self) -> None:
        self.done.set()
        self.join(self.lease_s)  # a renewal stuck on a dead socket must not hold up the task


@contextmanager
def email_lock(settings: Settings, redis: Redis, email: str, *, ttl_s: float,
               wait_s: float = WAIT_S, lease_s: float = LEASE_S) -> Iterator[None]:
    """Hold the lock for `email` while the body runs (at most `ttl_s`), or raise
    EmailBusyError after waiting `wait_s`. If this process dies, the lock is free within
    `lease_s`."""
    lease_s = min(lease_s, ttl_s)
    lock = redis.lock(email_key(settings, email), timeout=lease_s, sleep=0.05,
                      blocking_timeout=wait_s, thread_local=False)
    try:
        acquired = lock.acquire()
    except RedisError as exc:
        raise RedisUnavailableError(f"cannot take the email lock: {type(exc).__name__}") from None
    if not acquired:
        raise EmailBusyError("another worker is writing this contact", retry_after_s=wait_s)
    renewer = _Renewer(lock, lease_s, time.monotonic() + ttl_s)
    renewer.start()
    try:
        yield
    finally:
        renewer.stop()
        try:
            lock.release()
        except LockError:
            log.warning("email lock expired before release (the write outlived its TTL)")
        except RedisError:
            log.warning("could not release the email lock (Redis); it expires by itself")
