"""One writer per email address across the fleet, and no lock outliving a dead holder by much.

Constant Contact answers 409 to simultaneous writes to the same contact (facts sheet 4.3), and a
lookup-then-write (GET then PUT/POST) must not interleave with another worker's. The lock has an
owner token; only the owner extends or releases it (worker/lua/email_lock.lua).

Its expiry is a short lease (`LEASE_S`) that the holding process renews while the work runs, up
to `ttl_s` in all. A holder killed mid-write (kill -9, OOM) stops renewing, so the lock frees
itself within one lease, well before the dead worker's message comes back from the broker; with
a fixed TTL as long as the work could take, the redelivered lead waited for minutes behind a
lock nobody held. One renewer thread per process serves every lock it holds (a thread started
per lead cost more than the lead's Redis work), and taking and releasing ride in the lead's
ledger steps (a `Claim`, worker/delivery/lead_steps.py): no round trip of their own.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from redis import Redis
from redis.exceptions import RedisError

from worker.base.errors import EmailBusyError, RedisUnavailableError
from worker.base.keys import Keys
from worker.base.settings import Settings
from worker.ledger.ledger import Claim
from worker.lua import script

log = logging.getLogger(__name__)
WAIT_S = 5.0
LEASE_S = 10.0  # a dead holder's lock is free at most this long after its last renewal
RENEWALS_PER_LEASE = 4  # renew every 2.5 s: a renewal may run late by 7.5 s before it matters
POLL_S = 0.05  # how often a waiting taker tries again
OWNED = script("email_lock")  # worker/lua/email_lock.lua: extend / release by the owner only


def email_key(settings: Settings, email: str) -> str:
    digest = hashlib.sha256(email.lower().encode()).hexdigest()[:32]  # no address in key names
    return Keys(settings.key_prefix, settings.account).email_lock(digest)


class EmailLock:
    """One holder's lock on one address: taken (in a batch or by waiting), renewed, released."""

    def __init__(self, settings: Settings, redis: Redis, email: str, *, ttl_s: float,
                 wait_s: float = WAIT_S, lease_s: float = LEASE_S) -> None:
        self.redis = redis
        self.key = email_key(settings, email)
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
        entry = _renewer().add(self, time.monotonic() + self.ttl_s)
        try:
            yield
        finally:
            _renewer().remove(entry)

    def extend(self, lease_s: float) -> bool:
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


class _Renewer(threading.Thread):
    """Extends every lock this process holds until its holder lets go or its deadline (the
    longest hold) passes; then the lease runs out. It ticks every lease / RENEWALS_PER_LEASE of
    the shortest lease held and renews the locks whose renewal is due, so a lead held for
    milliseconds costs a dictionary entry, not a wake-up; a renewal is at most one tick late
    (two of the four renewals a lease allows)."""

    def __init__(self) -> None:
        super().__init__(name="email-lock-renewer", daemon=True)
        self.pid = os.getpid()
        self.cond = threading.Condition()
        self.held: dict[int, tuple[EmailLock, float, float]] = {}  # (lock, next, deadline)
        self.seq = itertools.count()
        self.tick_s: float | None = None  # None: idle, waiting to be told of a lock

    def add(self, lock: EmailLock, deadline: float) -> int:
        entry = next(self.seq)
        every = lock.lease_s / RENEWALS_PER_LEASE
        with self.cond:
            self.held[entry] = (lock, time.monotonic() + every, deadline)
            if self.tick_s is None or every < self.tick_s:
                self.cond.notify()  # idle, or this lease needs a faster tick
        return entry

    def remove(self, entry: int) -> None:
        with self.cond:
            self.held.pop(entry, None)

    def run(self) -> None:
        while True:
            with self.cond:
                self.tick_s = min((lock.lease_s / RENEWALS_PER_LEASE
                                   for lock, _next, _end in self.held.values()), default=None)
                self.cond.wait(self.tick_s)
                now = time.monotonic()
                due = [(entry, lock, end) for entry, (lock, at, end) in self.held.items()
                       if at <= now]
            for entry, lock, deadline in due:
                keep = self._renew(lock, deadline)
                with self.cond:
                    if entry not in self.held:
                        continue  # let go meanwhile
                    if keep:
                        every = lock.lease_s / RENEWALS_PER_LEASE
                        self.held[entry] = (lock, time.monotonic() + every, deadline)
                    else:
                        del self.held[entry]

    @staticmethod
    def _renew(lock: EmailLock, deadline: float) -> bool:
        """True to keep renewing this lock."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False  # the longest hold is reached: let the lease run out
        try:
            # Only the owner token may reset the expiry (Lua); never past the deadline.
            if not lock.extend(min(lock.lease_s, remaining)):
                log.warning("email lock lost while held (expired before renewal)")
                return False
        except RedisError:
            pass  # Redis blinked: try again before the lease runs out
        return True


_state: dict[str, _Renewer] = {}
_state_lock = threading.Lock()


def _renewer() -> _Renewer:
    """This process's renewer (a forked child starts its own: threads do not survive fork)."""
    with _state_lock:
        current = _state.get("renewer")
        if current is None or current.pid != os.getpid():
            current = _state["renewer"] = _Renewer()
            current.start()
        return current


@contextmanager
def email_lock(settings: Settings, redis: Redis, email: str, *, ttl_s: float,
               wait_s: float = WAIT_S, lease_s: float = LEASE_S) -> Iterator[None]:
    """Hold the lock for `email` while the body runs (at most `ttl_s`), or raise
    EmailBusyError after waiting `wait_s`. If this process dies, the lock is free within
    `lease_s`."""
    lock = EmailLock(settings, redis, email, ttl_s=ttl_s, wait_s=wait_s, lease_s=lease_s)
    lock.acquire()
    try:
        with lock.renewed():
            yield
    finally:
        lock.release()
