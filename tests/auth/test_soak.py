"""The done-when run, against the sandbox: rotating refresh tokens with a 10 s access-token
lifetime, a real `celery beat` and `celery worker -Q leadsync-control` on the private Redis, and
four OS processes calling the API with the shared token for two minutes. Then the refresh token
is revoked mid-run: reauth_required within one beat interval, one alert, and `auth device`
restores ok."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.fixtures.tokens import WebhookSink
from worker.account import Account
from worker.auth.status import token_status
from worker.base.settings import load_settings
from worker.cli import main
from worker.sandbox import SandboxConfig, SandboxServer

REPO = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))
SOAK_S = float(os.environ.get("LEADSYNC_TEST_SOAK_S", "120"))
BEAT_S = 1.0
APP = "worker"

CALLER = """
import json, sys, time, requests
from worker.base.settings import load_settings
from worker.base.redis_conn import get_redis
from worker.auth.access import current_access_token, request_refresh
from worker.account import Account
settings = load_settings(); tokens = Account(settings, get_redis(settings)).tokens
counts = {"ok": 0, "401": 0, "other": 0}
deadline = time.time() + float(sys.argv[1])
while time.time() < deadline:
    token = current_access_token(tokens)
    resp = requests.get(settings.api_base_url + "/contact_lists",
                        headers={"Authorization": "Bearer " + token.value}, timeout=10)
    key = "ok" if resp.status_code == 200 else str(resp.status_code)
    counts[key if key in counts else "other"] += 1
    if resp.status_code == 401:
        request_refresh(tokens, token.generation)
    time.sleep(0.1)
print(json.dumps(counts))
"""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.fixture
def sandbox_10s() -> Iterator[SandboxServer]:
    """Rotating refresh tokens, 10 s access tokens, device requests approved at once; the API
    limits are off so four busy callers measure the token path, not the rate limiter."""
    server = SandboxServer(SandboxConfig(
        refresh_tokens="rotating", access_token_lifetime_s=10, auto_approve=True,
        device_interval_s=1, rate_limit_per_s=0, daily_quota=0)).start()
    yield server
    server.stop()


@pytest.fixture
def soak_env(monkeypatch: pytest.MonkeyPatch, sandbox_10s: SandboxServer, redis_url: str,
             webhook_server: WebhookSink, tmp_path: Path) -> dict[str, str]:
    env = {**sandbox_10s.settings_env(), "LEADSYNC_REDIS_URL": redis_url,
           "LEADSYNC_REFRESH_INTERVAL_S": str(BEAT_S),
           "LEADSYNC_REFRESH_MARGIN_RATIO": "0.5",
           "LEADSYNC_ALERT_WEBHOOK_URL": webhook_server.url}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def celery_procs(soak_env: dict[str, str], tmp_path: Path) -> Iterator[list[Any]]:
    env = {**os.environ, **soak_env}
    logs = [open(tmp_path / name, "wb") for name in ("beat.log", "worker.base.log")]  # noqa: SIM115 - closed below
    procs = [
        subprocess.Popen([CELERY, "-A", APP, "beat", "-s", str(tmp_path / "beat-schedule"),
                          "--loglevel", "INFO"], cwd=REPO, env=env, stdout=logs[0],
                         stderr=subprocess.STDOUT, start_new_session=True),
        subprocess.Popen([CELERY, "-A", APP, "worker", "-Q", "leadsync-control", "-c", "1",
                          "--loglevel", "INFO"], cwd=REPO, env=env, stdout=logs[1],
                         stderr=subprocess.STDOUT, start_new_session=True),
    ]
    yield procs
    for proc in procs:
        _stop(proc)
    for log in logs:
        log.close()


@pytest.mark.slow
def test_soak_then_revocation(soak_env: dict[str, str], sandbox_10s: SandboxServer,
                              webhook_server: WebhookSink, redis_client: redis.Redis,
                              celery_procs: list[Any], tmp_path: Path) -> None:
    assert main(["auth", "device"]) == 0
    settings = load_settings()
    tokens = Account(settings, redis_client).tokens
    callers = [subprocess.Popen([sys.executable, "-c", CALLER, str(SOAK_S)], cwd=REPO,
                                env={**os.environ, **soak_env}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(4)]
    samples: list[str] = []
    start = time.time()
    while any(c.poll() is None for c in callers):
        samples.append(token_status(tokens)["state"])
        time.sleep(0.5)
    results = [c.communicate() for c in callers]
    counts = [json.loads(out) for out, _ in results]
    status = token_status(tokens)
    seen = sandbox_10s.stats()
    report = {"seconds": round(time.time() - start), "calls": sum(c["ok"] for c in counts),
              "api_401": seen["unauthorized_401"], "refreshes": seen["refreshes"],
              "generation": status["generation"], "invalid_grant": seen["invalid_grant"],
              "samples": len(samples)}
    print("SOAK", json.dumps(report))
    assert all(c["401"] == 0 and c["other"] == 0 for c in counts), results
    assert seen["unauthorized_401"] == 0 and seen["invalid_grant"] == 0
    assert set(samples) == {"ok"}
    # exactly one refresh per generation (generation 1 came from `auth device`)
    assert seen["refreshes"] == status["generation"] - 1
    assert seen["refreshes"] >= SOAK_S / 10  # it kept refreshing the 10 s token

    # Revoke mid-run: the next due refresh finds invalid_grant and stops everything cleanly.
    sandbox_10s.revoke_refresh_tokens()
    revoked_at = time.time()
    deadline = revoked_at + 10 + BEAT_S * 2
    while token_status(tokens)["state"] != "reauth_required":
        assert time.time() < deadline, token_status(tokens)
        time.sleep(0.1)
    due_in = max(0.0, status["next_refresh_at"] - revoked_at)
    detected_after = time.time() - revoked_at
    print("REVOKE", json.dumps({"detected_after_s": round(detected_after, 2),
                                "refresh_was_due_in_s": round(due_in, 2)}))
    assert detected_after <= due_in + BEAT_S + 1.0  # within one beat of the attempt being due
    time.sleep(3 * BEAT_S)  # further beats must not alert again
    assert len(webhook_server.posts) == 1
    assert main(["auth", "device"]) == 0
    assert token_status(tokens)["state"] == "ok"
