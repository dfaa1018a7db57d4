"""Issue 9, done when 6: a refresher is killed (kill -9) while its refresh request is in flight,
with rotating refresh tokens. The sandbox has already rotated (its answer is held back by an
injected latency), so the only valid refresh token dies with the process. A real `celery beat`
and `celery worker -Q leadsync-control` then find the interrupted refresh (marker set, no new
generation, the dead holder's lock lease gone) and try the same refresh token once:
- with the sandbox's rotation grace of 30 s (Okta offers 0-60 s): a new pair, 0 invalid_grant,
  state ok;
- with grace 0: reauth_required, and `auth status`, `status` and `health` give the reason
  "refresh interrupted at <UTC time>, the new token was lost".
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.fixtures.ops import leadsync_bin, wait_for
from tests.fixtures.tokens import HOUR_S, authorize, sandbox_settings
from worker.account import Account
from worker.auth.status import token_status
from worker.base.keys import Keys
from worker.sandbox import SandboxServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
HELD_MS = 4_000  # how long the sandbox holds each answer back while the refresh is killed
REASON = re.compile(r"refresh interrupted at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, the new token "
                    r"was lost")


def _leadsync(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([leadsync_bin("leadsync"), *argv], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("grace_s", [30, 0], ids=["grace-30s", "grace-0"])
def test_refresher_killed_mid_request_recovers_in_grace_or_names_the_loss(
        make_sandbox: Callable[..., SandboxServer], make_settings: Any, redis_url: str,
        redis_client: redis.Redis, spawned: Any, grace_s: int) -> None:
    server = make_sandbox(access_token_lifetime_s=HOUR_S, refresh_grace_s=grace_s,
                          token_rate_limit_per_s=1)
    settings = sandbox_settings(make_settings, server, redis_url=redis_url)
    tokens = Account(settings, redis_client).tokens
    authorize(settings, redis_client, server)  # generation 1, an hour to live: never due
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LEADSYNC_")},
           **server.settings_env(), "LEADSYNC_REDIS_URL": redis_url,
           "LEADSYNC_REFRESH_INTERVAL_S": "1", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
    spawned.start("beat", ["celery", "-A", "worker", "beat", "--loglevel=INFO",
                           f"--schedule={spawned.tmp_path / 'beat-schedule'}"], env, cwd=REPO)
    spawned.start("control", ["celery", "-A", "worker", "worker", "-Q", "leadsync-control",
                              "-c", "1", "--without-mingle", "--without-gossip",
                              "--loglevel=INFO"], env, cwd=REPO)

    # The refresher: `leadsync auth refresh` (the same locked path as the beat's task). The
    # sandbox rotates on arrival and holds the answer back; we kill -9 the process meanwhile.
    server.set_faults(latency_ms=HELD_MS)
    victim = spawned.start("refresher", ["leadsync", "auth", "refresh"], env, cwd=REPO)
    wait_for(lambda: server.stats()["refreshes"] == 1, 60, "the sandbox to rotate the token")
    marker = tokens.read()
    assert marker is not None and marker.attempt_started_at > 0  # written before the request
    os.killpg(victim.pid, signal.SIGKILL)
    killed_at = time.time()
    victim.wait(10)
    server.set_faults(latency_ms=0)
    assert redis_client.exists(Keys().token_lock)  # the dead holder's lease is still there

    def settled() -> dict[str, Any] | None:
        info = token_status(tokens)
        return info if info["state"] != "ok" or info["generation"] > 1 else None

    info = wait_for(settled, 60, "the interrupted refresh to be settled")
    took = time.time() - killed_at
    stats = server.stats()
    print(f"\nINTERRUPTED grace {grace_s} s: state {info['state']}, generation "
          f"{info['generation']}, invalid_grant {stats['invalid_grant']}, grace reuses "
          f"{stats['refresh_grace_reuses']}, settled {took:.1f} s after the kill")
    if grace_s:
        assert info["state"] == "ok" and info["generation"] == 2
        assert stats["invalid_grant"] == 0 and stats["refresh_grace_reuses"] == 1
        assert took < grace_s
        record = tokens.read()
        assert record is not None and not record.attempt_started_at and not record.interrupted_at
        return

    assert info["state"] == "reauth_required"
    assert REASON.match(info["state_reason"]), info["state_reason"]
    assert stats["invalid_grant"] == 1 and info["generation"] == 1
    shown = {
        "auth status": _leadsync(env, "auth", "status"),
        "status": _leadsync(env, "status"),
        "health": _leadsync(env, "health", "--no-worker-check"),
    }
    for name, result in shown.items():
        assert REASON.search(result.stdout), f"{name}: {result.stdout}{result.stderr}"
    assert shown["auth status"].returncode == 6 and shown["health"].returncode == 9
