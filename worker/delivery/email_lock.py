"""One writer per email address across the fleet, and no lock outliving a dead holder by much.

Constant Contact answers 409 to simultaneous writes to the same contact (facts sheet 4.3), and a
lookup-then-write (GET then PUT/POST) must not interleave with another worker's. The lock has an
owner token; only the owner extends or releases it (worker/lua/email_lock.lua).

Its expiry is a short lease (`LEASE_S`) that the holding process renews while the work runs, up
to `ttl_s` in all (worker/base/lease.py: one keeper thread per process for every lock it holds).
A holder killed mid-write (kill -9, OOM) stops renewing, so the lock frees itself within one
lease, well before the dead worker's message comes back from the broker; with a fixed TTL as
long as the work could take, the redelivered lead waited for minutes behind a lock nobody held.
Taking and releasing ride in the lead's ledger steps (a `Claim`, worker/delivery/lead_steps.py):
no round trip of their own.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from redis.exceptions import RedisError

from worker.base.errors import EmailBusyError, RedisUnavailableError
from worker.base.keys import Keys
from worker.base.lease import LeaseKeeper
from worker.base.scope import Scope
from worker.ledger.ledger import Claim
from worker.lua import script

log = logging.getLogger(__name__)
WAIT_S = 5.0
LEASE_S = 10.0  # a dead holder's lock is free at most this long after its last renewal
RENEWALS_PER_LEASE = 4  # renew every 2.5 s: a renewal may run late by 7.5 s before it matters
POLL_S = 0.05  # how often a waiting taker tries again
OWNED = script("email_lock")  # worker/lua/email_lock.lua: extend / release by the owner only


def email_key(keys: Keys, email: str) -> str:
    digest = hashlib.sha256(email.lower().encode()).hexdigest()[:32]  # no address in key names
    return keys.email_lock(digest)


class EmailLock:
    """One holder's lock on one address: taken (in a batch or by waiting), renewed, released."""

    def __init__(self, scope: Scope, email: str, *, ttl_s: float, wait_s: float = WAIT_S,
                 lease_s: float = LEASE_S) -> None:
        self.redis = scope.redis
        self.key = email_key(scope.keys, email)
        self.token = uuid.uuid4().hex
        self.ttl_s, self.wait_s = ttl_s, wait_s
        self.lease_s = min(lease_s, ttl_s)
        self.held = False

    # --- taking ------------------------------------------------------------------------------
    def claim(self) -> Claim:
        """This lock as a ledger Claim: `begin` takes it with the lead when it is free, the
        lead's next move lets it go (worker/lua/ledger.lua), each in the same step."""
        return Claim(self.key, self.token, self._lease_ms(self.lease_s))

    def took(self, taken: bool) -> bool:
        """What the ledger step did with the claim: taken (True) or not."""
        self.held = taken
        return taken

    def acquire(self) -> None:
        """Wait up to `wait_s` for the lock; EmailBusyError when another holder keeps it."""
        deadline = time.monotonic() + self.wait_s
        try:
            # A step sent twice (Redis back after a blink) may have taken it already.
            if self.redis.get(self.key) == self.token.encode():
                self.held = True
                return
            while not self.redis.set(self.key, self.token, nx=True,
                                     px=self._lease_ms(self.lease_s)):
                if time.monotonic() + POLL_S > deadline:
                    raise EmailBusyError("another worker is writing this contact",
                                         retry_after_s=self.wait_s)
                time.sleep(POLL_S)
        except RedisError as exc:
            raise RedisUnavailableError(
                f"cannot take the email lock: {type(exc).__name__}") from None
        self.held = True

    # --- holding -----------------------------------------------------------------------------
    @contextmanager
    def renewed(self) -> Iterator[None]:
        """Keep the lease alive while the body runs (never past `ttl_s` from now)."""
        lease = LeaseKeeper.start_for(self, lease_s=self.lease_s,
                                      every_s=self.lease_s / RENEWALS_PER_LEASE,
                                      hold_s=self.ttl_s, what="email lock")
        try:
            yield
        finally:
            lease.stop()

    def renew(self, lease_s: float) -> bool:
        """Reset the lease to `lease_s` if this holder still owns it (worker/base/lease.py)."""
        return bool(OWNED.run(self.redis, [self.key], ["extend", self.token,
                                                       self._lease_ms(lease_s)]))

    # --- releasing ---------------------------------------------------------------------------
    def released(self, owned: bool) -> None:
        """A ledger move with this claim let go of the lock (`owned`: it was still ours)."""
        self.held = False
        if not owned:
            log.warning("email lock expired before release (the write outlived its TTL)")

    def release(self) -> None:
        """Release now if held; Redis trouble only leaves it to expire by itself."""
        if not self.held:
            return
        try:
            self.released(bool(OWNED.run(self.redis, [self.key], ["release", self.token])))
        except RedisError:
            self.held = False
            log.warning("could not release the email lock (Redis); it expires by itself")

    @staticmethod
    def _lease_ms(lease_s: float) -> int:
        return max(1, int(lease_s * 1000))


@contextmanager
def email_lock(scope: Scope, email: str, *, ttl_s: float, wait_s: float = WAIT_S,
               lease_s: float = LEASE_S) -> Iterator[None]:
    """Hold the lock for `email` while the body runs (at most `ttl_s`), or raise
    EmailBusyError after waiting `wait_s`. If this process dies, the lock is free within
    `lease_s`."""
    lock = EmailLock(scope, email, ttl_s=ttl_s, wait_s=wait_s, lease_s=lease_s)
    lock.acquire()
    try:
        with lock.renewed():
            yield
    finally:
        lock.release()
