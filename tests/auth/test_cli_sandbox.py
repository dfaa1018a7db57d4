"""`leadsync auth ...` against the sandbox (Constant Contact's behaviour), as a person runs it:
login with PKCE for a public and a confidential client, the device flow approved, denied and
expired. The same commands also pass against the independent fake server in test_cli_flows.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import redis
import requests

from worker.cli import main
from worker.cli.exit_codes import ExitCode
from worker.embedded_redis import free_port

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.redis


@pytest.fixture
def point_at(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> Callable[[Any], dict[str, str]]:
    def apply(server: Any, **extra: str) -> dict[str, str]:
        env = {**server.settings_env(), "LEADSYNC_REDIS_URL": redis_url,
               "LEADSYNC_REDIRECT_URI": f"http://127.0.0.1:{free_port()}/callback", **extra}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return env

    return apply


def _status(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    main(["auth", "status", "--json"])
    return dict(json.loads(capsys.readouterr().out))


def _login(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker", "auth", "login", "--no-browser", "--timeout", "30"],
        cwd=REPO, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("http"):
            return proc, line.strip()
    _, err = proc.communicate(timeout=30)
    raise AssertionError(f"no authorize URL printed: {err}")


@pytest.mark.parametrize("confidential", [False, True])
def test_login_with_pkce_against_the_sandbox(
    make_sandbox: Any, point_at: Any, capsys: pytest.CaptureFixture[str], confidential: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sandbox = make_sandbox(auto_approve=True, token_rate_limit_per_s=0)
    env = point_at(sandbox)
    if not confidential:
        env.pop("LEADSYNC_CLIENT_SECRET")
        monkeypatch.delenv("LEADSYNC_CLIENT_SECRET")
    proc, url = _login(env)
    query = parse_qs(urlparse(url).query)
    assert query["code_challenge_method"] == ["S256"] and query["state"]
    assert query["scope"] == ["contact_data offline_access"]
    page = requests.get(url, timeout=10)  # the browser: consent (auto-approved), then callback
    assert page.status_code == 200
    _, err = proc.communicate(timeout=30)
    proc.stdout.close()  # type: ignore[union-attr]
    assert proc.returncode == 0, err
    info = _status(capsys)
    assert info["state"] == "ok" and info["generation"] == 1
    assert info["platform_user_id"] == "6f9b2c1e-1c1d-4a8e-9a55-3b1c0c5e7d21"
    assert main(["auth", "refresh"]) == ExitCode.OK
    assert _status(capsys)["refresh_token_mode"] == "rotating"
    assert sandbox.stats()["invalid_grant"] == 0


def test_device_flow_denied_in_the_sandbox(make_sandbox: Any, point_at: Any,
                                           redis_client: redis.Redis) -> None:
    sandbox = make_sandbox(device_interval_s=0.2, token_rate_limit_per_s=0)
    point_at(sandbox)
    import threading

    def deny_when_asked() -> None:
        for _ in range(200):
            if sandbox.deny_device():
                return
            threading.Event().wait(0.05)

    denier = threading.Thread(target=deny_when_asked)
    denier.start()
    assert main(["auth", "device"]) == ExitCode.ACCESS_DENIED
    denier.join(15)


def test_device_code_that_expires_exits_8(make_sandbox: Any, point_at: Any,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    sandbox = make_sandbox(device_interval_s=0.2, device_expires_in_s=1.0,
                           token_rate_limit_per_s=0)
    point_at(sandbox)
    assert main(["auth", "device"]) == ExitCode.EXPIRED  # nobody approved it in time
    err = capsys.readouterr().err
    assert "expired" in err and "leadsync auth device" in err
    assert _status(capsys)["state"] == "not_authorized"
