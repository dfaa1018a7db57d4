"""The per-email lock: held as long as its holder works, free soon after its holder dies, never
released by anyone but its owner. Real Redis, and a real process killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from tests.fixtures.ops import REPO, wait_for
from worker.base.errors import EmailBusyError
from worker.base.keys import Keys
from worker.base.scope import Scope
from worker.delivery.email_lock import email_key, email_lock

pytestmark = pytest.mark.redis
EMAIL = "Ada@Engines.example"
PRODUCTION_TTL_S = 110.0  # what delivery asks for: 4 x (10 s HTTP + 10 s limiter) + 30 s


def taken_elsewhere(settings: Any, client: redis.Redis) -> bool:
    """True when a second holder cannot take the lock right now."""
    try:
        with email_lock(Scope(settings, client), EMAIL, ttl_s=5, wait_s=0):
            return False
    except EmailBusyError:
        return True


def test_the_lease_is_renewed_while_the_holder_works(
    make_settings: Callable[..., Any], redis_client: redis.Redis, redis_url: str
) -> None:
    settings = make_settings(redis_url=redis_url)
    key = email_key(Keys(), EMAIL)
    with email_lock(Scope(settings, redis_client), EMAIL, ttl_s=PRODUCTION_TTL_S, lease_s=1.0):
        assert 0 < redis_client.pttl(key) <= 1000  # the lease, not the 110 s of the work
        held_until = time.monotonic() + 3 * 1.0  # three leases
        while time.monotonic() < held_until:
            assert taken_elsewhere(settings, redis_client)
            time.sleep(0.05)  # poll cadence
    assert redis_client.exists(key) == 0  # released at once by its owner


def test_a_killed_holder_frees_the_lock_within_one_lease(
    make_settings: Callable[..., Any], redis_client: redis.Redis, redis_url: str
) -> None:
    settings = make_settings(redis_url=redis_url)
    script = (
        "import sys, time\n"
        "from worker.delivery.email_lock import email_lock\n"
        "from worker.base.redis_conn import get_redis\n"
        "from worker.base.scope import Scope\n"
        "from worker.base.settings import Settings\n"
        f"settings = Settings(_env_file=None, redis_url={redis_url!r})\n"
        "scope = Scope(settings, get_redis(settings))\n"
        f"with email_lock(scope, {EMAIL!r}, ttl_s={PRODUCTION_TTL_S}, lease_s=2.0):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(600)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              env=env, cwd=REPO)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"held\n"
        # Alive and renewing: still held after more than a lease.
        started = time.monotonic()
        while time.monotonic() < started + 3.0:
            assert taken_elsewhere(settings, redis_client)
            time.sleep(0.1)
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        killed_at = time.monotonic()
        # The 110 s the work may take do not matter: the dead holder's lease runs out.
        with email_lock(Scope(settings, redis_client), EMAIL, ttl_s=5, wait_s=30):
            waited = time.monotonic() - killed_at
        print(f"\nEMAIL-LOCK free {waited:.2f}s after its holder was killed (lease 2 s, "
              f"work TTL {PRODUCTION_TTL_S:.0f} s)")
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_the_longest_hold_ends_the_lease_and_only_the_owner_releases(
    make_settings: Callable[..., Any], redis_client: redis.Redis, redis_url: str
) -> None:
    settings = make_settings(redis_url=redis_url)
    key = email_key(Keys(), EMAIL)
    with email_lock(Scope(settings, redis_client), EMAIL, ttl_s=0.6, lease_s=0.3):
        # Past ttl_s the holder stops renewing: a hung write cannot keep the address forever.
        wait_for(lambda: redis_client.exists(key) == 0, 10, "the lock to expire at ttl_s")
        second = redis_client.lock(key, timeout=30)
        assert second.acquire(blocking=False)
        # The first holder now leaves its block: its release must not delete the new owner's lock.
    assert redis_client.exists(key) == 1
    assert second.owned()
    second.release()


def test_a_busy_address_is_refused_after_the_wait(
    make_settings: Callable[..., Any], redis_client: redis.Redis, redis_url: str
) -> None:
    settings = make_settings(redis_url=redis_url)
    with email_lock(Scope(settings, redis_client), EMAIL, ttl_s=5, lease_s=1):
        with pytest.raises(EmailBusyError) as caught, \
                email_lock(Scope(settings, redis_client), EMAIL.lower(), ttl_s=5, wait_s=0.2):
            pass
        assert "Engines" not in str(caught.value) and "@" not in str(caught.value)
