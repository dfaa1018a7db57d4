"""One writer per email address across the fleet, and no lock outliving a dead holder by much.

Constant Contact answers 409 to simultaneous writes to the same contact (facts sheet 4.3), and a
lookup-then-write (GET then PUT/POST) must not interleave with another worker's. The lock has an
owner token; only the owner extends or releases it (redis-py's compare-and-set Lua scripts).

Its expiry is a short lease (`LEASE_S`) that a thread in the holding process renews while the
work runs, up to `ttl_s` in all (worker/base/lease.py). A holder killed mid-write (kill -9,
OOM) stops renewing, so the lock frees itself within one lease, well before the dead worker's
message comes back from the broker (the visibility timeout); with a fixed TTL as long as the
work could take, the redelivered lead waited for minutes behind a lock nobody held.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from redis.exceptions import LockError, RedisError

from worker.base.errors import EmailBusyError, RedisUnavailableError
from worker.base.keys import Keys
from worker.base.lease import LeaseKeeper
from worker.base.scope import Scope

log = logging.getLogger(__name__)
WAIT_S = 5.0
LEASE_S = 10.0  # a dead holder's lock is free at most this long after its last renewal
RENEWALS_PER_LEASE = 4  # renew every 2.5 s: a renewal may run late by 7.5 s before it matters


def email_key(keys: Keys, email: str) -> str:
    digest = hashlib.sha256(email.lower().encode()).hexdigest()[:32]  # no address in key names
    return keys.email_lock(digest)


@contextmanager
def email_lock(scope: Scope, email: str, *, ttl_s: float, wait_s: float = WAIT_S,
               lease_s: float = LEASE_S) -> Iterator[None]:
    """Hold the lock for `email` while the body runs (at most `ttl_s`), or raise
    EmailBusyError after waiting `wait_s`. If this process dies, the lock is free within
    `lease_s`."""
    lease_s = min(lease_s, ttl_s)
    lock = scope.redis.lock(email_key(scope.keys, email), timeout=lease_s, sleep=0.05,
                            blocking_timeout=wait_s, thread_local=False)
    try:
        acquired = lock.acquire()
    except RedisError as exc:
        raise RedisUnavailableError(f"cannot take the email lock: {type(exc).__name__}") from None
    if not acquired:
        raise EmailBusyError("another worker is writing this contact", retry_after_s=wait_s)
    renewer = LeaseKeeper.start_for(lock, lease_s=lease_s, every_s=lease_s / RENEWALS_PER_LEASE,
                                    hold_s=ttl_s, what="email lock")
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
