"""Interrupted refresh (issue 9) on real Redis against the sandbox: the in-flight marker is in
Redis before the request leaves, the next refresher settles an interrupted refresh at once
(even when the token is not due) with the same refresh token, an answer lost to a timeout counts
as interrupted too, and the refresh lock of a killed holder is gone within its lease."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.fixtures.tokens import HOUR_S, authorize, sandbox_settings
from worker.account import Account
from worker.auth import token_store
from worker.auth.lock import LEASE_S, refresh_lock
from worker.auth.oauth_client import OAuthClient, TokenResponse
from worker.auth.refresher import refresh
from worker.auth.token_record import TokenRecord
from worker.auth.token_store import TokenStore
from worker.base.errors import OAuthTransientError
from worker.base.keys import Keys
from worker.base.scope import Scope
from worker.base.settings import Settings
from worker.sandbox import SandboxServer

pytestmark = pytest.mark.redis
REPO = Path(__file__).resolve().parents[2]


def _record(settings: Settings, r: redis.Redis) -> TokenRecord:
    record = Account(settings, r).tokens.read()
    assert record is not None
    return record


def _setup(make_sandbox: Callable[..., SandboxServer], make_settings: Any, redis_url: str,
           r: redis.Redis, grace_s: float) -> tuple[SandboxServer, Settings]:
    server = make_sandbox(access_token_lifetime_s=HOUR_S, refresh_grace_s=grace_s,
                          token_rate_limit_per_s=0)
    settings = sandbox_settings(make_settings, server, redis_url=redis_url)
    authorize(settings, r, server)
    return server, settings


def _killed_after_answer(settings: Settings, r: redis.Redis) -> None:
    """A forced refresh whose process dies between the token answer and the store write."""

    def crash(self: TokenStore, expected: int, record: Any) -> int:
        raise SystemExit("killed between the token answer and the store write")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(token_store.TokenStore, "replace", crash)
        with pytest.raises(SystemExit):
            refresh(Account(settings, r).tokens, force=True)


class _AnswerLostInTransit(OAuthClient):
    """The server rotates and answers, but the answer never arrives (read timeout)."""

    def refresh(self, refresh_token: str) -> TokenResponse:
        super().refresh(refresh_token)
        raise OAuthTransientError("no answer within 10 s", error="timeout")


def test_marker_is_in_redis_before_the_request_leaves(
        make_sandbox: Callable[..., SandboxServer], make_settings: Any, redis_url: str,
        redis_client: redis.Redis) -> None:
    _, settings = _setup(make_sandbox, make_settings, redis_url, redis_client, 0)
    seen: list[float] = []

    class Watching(OAuthClient):
        def refresh(self, refresh_token: str) -> TokenResponse:
            other = redis.Redis.from_url(redis_url)  # what any other process would read now
            seen.append(float(other.hget(Keys().token, "attempt_started_at") or 0))
            other.close()
            return super().refresh(refresh_token)

    outcome = refresh(Account(settings, redis_client).tokens, force=True, client=Watching(settings))
    assert outcome.action == "refreshed"
    assert seen and seen[0] > 0
    assert not _record(settings, redis_client).attempt_started_at  # cleared by the write


def test_interrupted_refresh_is_settled_at_the_next_beat_even_when_not_due(
        make_sandbox: Callable[..., SandboxServer], make_settings: Any, redis_url: str,
        redis_client: redis.Redis) -> None:
    server, settings = _setup(make_sandbox, make_settings, redis_url, redis_client, 30)
    tokens = Account(settings, redis_client).tokens
    _killed_after_answer(settings, redis_client)
    assert _record(settings, redis_client).attempt_started_at > 0
    outcome = refresh(tokens)  # a plain beat tick: the token has an hour left
    assert (outcome.action, outcome.generation) == ("refreshed", 2)
    stats = server.stats()
    assert stats["invalid_grant"] == 0 and stats["refresh_grace_reuses"] == 1
    record = _record(settings, redis_client)
    assert record.state == "ok" and not record.interrupted_at and not record.attempt_started_at
    assert refresh(tokens).action == "not_needed"  # and nothing more


@pytest.mark.parametrize("grace_s", [30, 0], ids=["grace-30s", "grace-0"])
def test_answer_lost_to_a_timeout_counts_as_interrupted(
        make_sandbox: Callable[..., SandboxServer], make_settings: Any, redis_url: str,
        redis_client: redis.Redis, grace_s: float) -> None:
    server, settings = _setup(make_sandbox, make_settings, redis_url, redis_client, grace_s)
    tokens = Account(settings, redis_client).tokens
    lost = refresh(tokens, force=True, client=_AnswerLostInTransit(settings))
    assert lost.action == "failing"
    record = _record(settings, redis_client)
    assert record.state == "refresh_failing" and record.interrupted_at > 0
    retry = refresh(tokens, clock=lambda: record.next_attempt_at + 0.1)
    if grace_s:
        assert retry.action == "refreshed" and server.stats()["invalid_grant"] == 0
        assert _record(settings, redis_client).state == "ok"
    else:
        assert retry.action == "reauth_required"
        assert retry.detail.startswith("refresh interrupted at ")
        assert "the new token was lost" in retry.detail


HOLDER = """
import sys, time
from worker.auth.lock import refresh_lock
from worker.base.redis_conn import get_redis
from worker.base.scope import Scope
from worker.base.settings import load_settings
settings = load_settings(_env_file=None, redis_url=sys.argv[1])
with refresh_lock(Scope(settings, get_redis(settings)), wait_s=5):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_killed_holder_frees_the_lock_within_its_lease(
        make_settings: Any, redis_url: str, redis_client: redis.Redis) -> None:
    settings: Settings = make_settings(redis_url=redis_url)  # lock TTL setting: 45 s
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, redis_url], cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)},
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        key = Keys().token_lock
        held_since = time.monotonic()
        while time.monotonic() - held_since < LEASE_S + 2:  # alive: renewed past its lease
            assert redis_client.exists(key)
            time.sleep(0.2)
        os.killpg(holder.pid, signal.SIGKILL)
        killed = time.monotonic()
        with refresh_lock(Scope(settings, redis_client), wait_s=LEASE_S + 5):
            freed_after = time.monotonic() - killed
        print(f"\nLOCK freed {freed_after:.1f} s after kill -9 (lease {LEASE_S:g} s, "
              f"LEADSYNC_REFRESH_LOCK_TTL_S {settings.refresh_lock_ttl_s:g} s)")
        assert freed_after < settings.refresh_lock_ttl_s
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(10)
        if holder.stdout is not None:
            holder.stdout.close()
