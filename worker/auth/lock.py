"""The refresh lock and the token-endpoint gate, both in Redis so they hold fleet-wide.

The lock is redis-py's `Lock`: an owner token, release only if still owned (Lua). Its TTL is a
short lease (LEASE_S) that a keeper thread renews while the holder lives (worker/base/lease.py),
for at most LEADSYNC_REFRESH_LOCK_TTL_S: a holder killed mid-refresh (kill -9, OOM) frees the
lock within the lease, so the next refresher can retry its refresh token inside a server's
rotation grace period (Okta: 0-60 s) instead of after the whole TTL. The gate is a `SET NX PX
1000` key: at most one token request per second across every process (Constant Contact's
documented limit).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from redis.exceptions import LockError, RedisError
from redis.lock import Lock

from worker.base.errors import RedisUnavailableError, RefreshLockTimeoutError
from worker.base.lease import LeaseKeeper
from worker.base.scope import Scope
from worker.base.settings import Settings

log = logging.getLogger(__name__)
# Constant Contact allows 1 token request/s; the spacing leaves 100 ms for the jitter between
# passing the gate and the request arriving (exactly 1000 ms drew a 429 now and then).
GATE_PERIOD_MS = 1100
LEASE_S = 5.0  # the lock's TTL while its holder lives; renewed every RENEW_EVERY_S
RENEW_EVERY_S = 1.0


def lease_s(settings: Settings) -> float:
    """The lock's TTL between renewals (never more than the whole hold time)."""
    return min(LEASE_S, settings.refresh_lock_ttl_s)


@contextmanager
def refresh_lock(scope: Scope, *, wait_s: float) -> Iterator[Lock]:
    """Hold the account's refresh lock, or raise RefreshLockTimeoutError after `wait_s`."""
    settings = scope.settings
    lock = scope.redis.lock(
        scope.keys.token_lock,
        timeout=lease_s(settings),
        sleep=0.05,
        blocking_timeout=wait_s,
        thread_local=False,
    )
    try:
        acquired = lock.acquire()
    except RedisError as exc:
        raise RedisUnavailableError(f"cannot take the refresh lock: {exc}") from None
    if not acquired:
        raise RefreshLockTimeoutError(f"another process holds the refresh lock ({wait_s:g} s)")
    keeper = LeaseKeeper.start_for(lock, lease_s=lease_s(settings), every_s=RENEW_EVERY_S,
                                   hold_s=settings.refresh_lock_ttl_s, what="refresh lock")
    try:
        yield lock
    finally:
        keeper.stop()
        try:
            lock.release()
        except LockError:
            # Our TTL ran out and maybe someone else holds it now: never delete theirs.
            log.warning("refresh lock expired before release (work outlived its TTL)")


def still_owned(lock: Lock) -> bool:
    """Reset the TTL right before the token request; False when the lock was lost."""
    try:
        lock.reacquire()
    except LockError:
        return False
    return True


def pass_token_endpoint_gate(scope: Scope, *, wait_s: float = 5.0) -> None:
    """Wait for this second's single token-request slot (fleet-wide)."""
    key, redis = scope.keys.token_endpoint_gate, scope.redis
    deadline = time.monotonic() + wait_s
    while True:
        try:
            if redis.set(key, "1", nx=True, px=GATE_PERIOD_MS):
                return
            remaining_ms = int(redis.pttl(key))
        except RedisError as exc:
            raise RedisUnavailableError(f"cannot use the token-endpoint gate: {exc}") from None
        if time.monotonic() >= deadline:
            raise RefreshLockTimeoutError("token endpoint gate busy (1 request/s fleet-wide)")
        time.sleep(min(max(remaining_ms, 10), GATE_PERIOD_MS) / 1000)
