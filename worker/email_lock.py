"""One writer per email address across the fleet.

Constant Contact answers 409 to simultaneous writes to the same contact (facts sheet 4.3), and a
lookup-then-write (GET then PUT/POST) must not interleave with another worker's. The lock has an
owner token and a TTL longer than the work it guards (three HTTP calls); only the owner releases.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from redis import Redis
from redis.exceptions import LockError, RedisError

from worker.errors import EmailBusyError, RedisUnavailableError
from worker.keys import Keys
from worker.settings import Settings

log = logging.getLogger(__name__)
WAIT_S = 5.0


def email_key(settings: Settings, email: str) -> str:
    digest = hashlib.sha256(email.lower().encode()).hexdigest()[:32]  # no address in key names
    return Keys(settings.key_prefix, settings.account).email_lock(digest)


@contextmanager
def email_lock(settings: Settings, redis: Redis, email: str, *, ttl_s: float,
               wait_s: float = WAIT_S) -> Iterator[None]:
    """Hold the lock for `email` (expires after `ttl_s`), or raise EmailBusyError."""
    lock = redis.lock(email_key(settings, email), timeout=ttl_s, sleep=0.05,
                      blocking_timeout=wait_s, thread_local=False)
    try:
        acquired = lock.acquire()
    except RedisError as exc:
        raise RedisUnavailableError(f"cannot take the email lock: {type(exc).__name__}") from None
    if not acquired:
        raise EmailBusyError("another worker is writing this contact", retry_after_s=wait_s)
    try:
        yield
    finally:
        try:
            lock.release()
        except LockError:
            log.warning("email lock expired before release (the write outlived its TTL)")
        except RedisError:
            log.warning("could not release the email lock (Redis); it expires by itself")
