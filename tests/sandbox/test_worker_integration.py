"""The worker's own code against the sandbox: the real `leadsync auth device` command, the
locked refresher with rotating tokens, and revocation ending in reauth_required."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from worker.account import Account
from worker.auth.access import current_access_token, token_state
from worker.auth.refresher import refresh
from worker.base.settings import Settings
from worker.sandbox import SandboxServer


@pytest.mark.redis
def test_auth_device_refresh_and_revocation_against_the_sandbox(
        make_sandbox: Callable[..., SandboxServer], redis_url: str,
        redis_client: redis.Redis) -> None:
    sandbox = make_sandbox(auto_approve=True, device_interval_s=1, token_rate_limit_per_s=0)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADSYNC_")}
    env.update(sandbox.settings_env(), LEADSYNC_REDIS_URL=redis_url)
    exe = Path(sys.executable).with_name("leadsync")
    done = subprocess.run([str(exe), "auth", "device"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sandbox-secret" not in done.stdout + done.stderr

    settings = Settings(_env_file=None, **{k.removeprefix("LEADSYNC_").lower(): v
                                           for k, v in env.items()
                                           if k.startswith("LEADSYNC_")})
    first = current_access_token(Account(settings, redis_client).tokens)
    assert sandbox.state.tokens.check_access(first.value, sandbox.state.clock.now())
    for _ in range(2):
        refresh(Account(settings, redis_client).tokens, force=True)
    latest = current_access_token(Account(settings, redis_client).tokens)
    assert latest.generation == first.generation + 2
    stats = sandbox.stats()
    assert stats["refreshes"] == 2 and stats["invalid_grant"] == 0
    assert stats["refresh_token_generation"] == 3

    sandbox.revoke_refresh_tokens()
    refresh(Account(settings, redis_client).tokens, force=True)
    assert sandbox.stats()["invalid_grant"] == 1
    assert token_state(Account(settings, redis_client).tokens) == "reauth_required"
