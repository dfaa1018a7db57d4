"""A wrong LEADSYNC_TOKEN_KEY with real processes (issue 11): a state the CLI shows, one ERROR
for the fleet, leads parked (not retried forever); with the right key every lead is delivered
exactly once. Tokens stored in clear are reported under a key and encrypted by the next write.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet

from tests.fixtures.ops import Spawned, leadsync_bin, wait_for
from worker.account import Account
from worker.base.keys import Keys
from worker.base.settings import load_settings
from worker.demo.demo import authorize_device, start_sandbox
from worker.leads.enqueue import enqueue_leads
from worker.ledger.parking import TOKEN_KEY

pytestmark = [pytest.mark.redis, pytest.mark.slow]

WORKER = ["celery", "-A", "worker", "worker", "-E", "--concurrency=2",
          "--hostname=tokenkey@%h", "--without-mingle", "--without-gossip"]
BEAT = ["celery", "-A", "worker", "beat", "--schedule=beat-schedule"]
LEADS = [{"email": f"key.lead{i}@example.com", "first_name": f"Lead{i}"} for i in range(6)]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([leadsync_bin("leadsync"), *args], env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def keyed_stack(redis_url: str, tmp_path: Path) -> Any:
    """Sandbox + tokens stored by the real `leadsync auth device` under key K1."""
    server, env = start_sandbox(redis_url, lifetime_s=30.0, rate_limit_per_s=50.0)
    right = Fernet.generate_key().decode()
    env = {**env, "LEADSYNC_TOKEN_KEY": right, "LEADSYNC_RESUME_INTERVAL_S": "1"}
    try:
        authorize_device(env, tmp_path / "auth-device.log")
        yield server, env, right
    finally:
        server.stop()


def test_wrong_key_parks_with_one_error_then_the_right_key_delivers_once(
    keyed_stack: tuple[Any, dict[str, str], str], spawned: Spawned, redis_client: redis.Redis,
) -> None:
    sandbox, env, _right = keyed_stack
    wrong = {**env, "LEADSYNC_TOKEN_KEY": Fernet.generate_key().decode()}
    settings = load_settings(_env_file=None, redis_url=env["LEADSYNC_REDIS_URL"])
    parking = Account(settings, redis_client).parking
    raw = redis_client.hgetall(Keys().token)
    assert raw and all(raw[f].startswith(b"fernet:") for f in (b"access_token", b"sub"))

    spawned.start("worker-wrong", WORKER, wrong)
    spawned.start("beat-wrong", BEAT, wrong)
    report = enqueue_leads(LEADS, redis=redis_client)
    assert report.enqueued == len(LEADS)

    def all_parked() -> bool:
        return parking.counts()["by_reason"].get(TOKEN_KEY, 0) == len(LEADS)

    wait_for(all_parked, 90, "every lead parked with reason token_key")
    # Beat keeps ticking (refresh every 2 s, resume every 1 s) for a while: still one ERROR.
    wait_for(lambda: spawned.log("beat-wrong").count("leadsync.resume_parked") >= 6, 60,
             "several resume ticks under the wrong key")

    status = _cli(wrong, "auth", "status")
    assert status.returncode == 3, status
    assert "token_key_invalid" in status.stdout and "LEADSYNC_TOKEN_KEY" in status.stdout
    overview = _cli(wrong, "status", "--json")
    token = json.loads(overview.stdout)["token"]
    assert token["state"] == "token_key_invalid" and token["sending_possible"] is False
    assert token["token_key_incidents"], token
    health = _cli(wrong, "health", "--no-worker-check")
    assert health.returncode == 9 and "token_key_invalid" in health.stdout
    # The operator's CLI with the right key still sees the broken worker's key.
    assert _cli(env, "health", "--no-worker-check").returncode == 9

    logs = spawned.log("worker-wrong") + spawned.log("beat-wrong")
    errors = [line for line in logs.splitlines() if " ERROR " in line]
    assert len(errors) == 1, errors
    assert "LEADSYNC_TOKEN_KEY" in errors[0] and "parked" in errors[0]
    assert "reason=config" not in logs
    assert sandbox.stats()["contacts"]["created"] == 0
    spawned.stop_all()

    spawned.start("worker-right", WORKER, env)
    spawned.start("beat-right", BEAT, env)
    wait_for(lambda: sandbox.stats()["contacts"]["count"] >= len(LEADS), 90,
             "every parked lead delivered with the right key")
    wait_for(lambda: not parking.entries(), 30, "the parking lot to empty")
    stats = sandbox.stats()
    assert stats["contacts"]["created"] == len(LEADS) and stats["contacts"]["updated"] == 0
    assert sorted(c["email_address"]["address"] for c in sandbox.contacts()) == sorted(
        lead["email"] for lead in LEADS)
    fixed = _cli(env, "auth", "status", "--json")
    assert fixed.returncode == 0 and json.loads(fixed.stdout)["state"] == "ok"
    right_logs = spawned.log("worker-right") + spawned.log("beat-right")
    assert " ERROR " not in right_logs


def test_clear_tokens_under_a_key_are_reported_and_encrypted_by_the_next_write(
    ops_stack: tuple[Any, dict[str, str]], redis_client: redis.Redis,
) -> None:
    _sandbox, env = ops_stack  # authorized without a key: tokens and sub in clear
    plain = _cli(env, "auth", "status")
    assert plain.returncode == 0
    assert plain.stderr.count("LEADSYNC_TOKEN_KEY is not set") == 1
    assert "tokens at rest:" in plain.stdout and "clear" in plain.stdout
    assert "tokens at rest: clear" in _cli(env, "status").stdout

    keyed = {**env, "LEADSYNC_TOKEN_KEY": Fernet.generate_key().decode()}
    before = _cli(keyed, "auth", "status")
    assert before.returncode == 0 and "encrypted with LEADSYNC_TOKEN_KEY at the next write" in (
        before.stdout)
    assert "LEADSYNC_TOKEN_KEY is not set" not in before.stderr
    refreshed = _cli(keyed, "auth", "refresh")
    assert refreshed.returncode == 0, refreshed
    after = _cli(keyed, "auth", "status", "--json")
    info = json.loads(after.stdout)
    assert info["tokens_at_rest"] == "encrypted" and info["state"] == "ok"
    raw = redis_client.hgetall(Keys().token)
    assert all(raw[f].startswith(b"fernet:") for f in (b"access_token", b"refresh_token", b"sub"))
    assert info["sub"] and info["sub"].encode() not in b"".join(raw.values())
