"""`leadsync auth ...` end to end against the fake authorization server and the private Redis:
device flow, login + PKCE (the test plays the browser), import, status, refresh, logout, and a
full authorize + refresh + failure run whose logs and errors must hold no token or secret."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
import redis
import requests

from tests.fixtures.tokens import FakeAuthServer
from worker.cli import main
from worker.cli.exit_codes import ExitCode
from worker.embedded_redis import free_port

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.redis


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, fake_auth: FakeAuthServer,
            redis_url: str) -> dict[str, str]:
    env = {**fake_auth.settings_env(), "LEADSYNC_REDIS_URL": redis_url,
           "LEADSYNC_REDIRECT_URI": f"http://127.0.0.1:{free_port()}/callback"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def _status(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    main(["auth", "status", "--json"])
    return dict(json.loads(capsys.readouterr().out))


def test_device_flow_status_refresh_logout(cli_env: dict[str, str], fake_auth: FakeAuthServer,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["auth", "status"]) == ExitCode.NOT_AUTHORIZED
    fake_auth.state.device_slow_down_once = True
    assert main(["auth", "device"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "enter the code" in out and "user_code=" in out
    info = _status(capsys)
    assert info["state"] == "ok" and info["generation"] == 1
    assert info["sub"] == "owner@example.com" and info["platform_user_id"] == "pu-123"
    assert info["scopes"] == ["contact_data", "offline_access"]
    assert info["refresh_token_mode"] == "unknown"
    assert 3500 < info["access_token_seconds_left"] <= 3600
    assert main(["auth", "refresh"]) == ExitCode.OK
    info = _status(capsys)
    assert (info["generation"], info["refresh_token_mode"]) == (2, "rotating")
    assert info["last_refresh_at"] is not None and info["next_refresh_at"] > info["last_refresh_at"]
    assert main(["auth", "logout"]) == ExitCode.OK
    assert fake_auth.count("revocations") == 2
    assert _status(capsys)["state"] == "not_authorized"


def test_device_flow_denied(cli_env: dict[str, str], fake_auth: FakeAuthServer) -> None:
    fake_auth.state.device_deny = True
    assert main(["auth", "device"]) == ExitCode.ACCESS_DENIED


def _login_process(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker", "auth", "login", "--no-browser", "--timeout", "30"],
        cwd=REPO, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("http"):
            return proc, line.strip()
    _, err = proc.communicate(timeout=30)
    raise AssertionError(f"no authorize URL printed: {err}")


def test_login_with_pkce_end_to_end(cli_env: dict[str, str], fake_auth: FakeAuthServer,
                                    redis_client: redis.Redis,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    proc, url = _login_process(cli_env)
    query = parse_qs(urlparse(url).query)
    assert query["code_challenge_method"] == ["S256"] and query["state"]
    page = requests.get(url, timeout=10)  # the "browser" follows the redirect to the callback
    assert page.status_code == 200 and "Authorization received" in page.text
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert _status(capsys)["state"] == "ok"


def test_login_rejects_a_wrong_state(cli_env: dict[str, str], fake_auth: FakeAuthServer,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    proc, url = _login_process(cli_env)
    redirect = requests.get(url, allow_redirects=False, timeout=10).headers["Location"]
    params = {k: v[0] for k, v in parse_qs(urlparse(redirect).query).items()}
    params["state"] = "forged"
    requests.get(redirect.split("?")[0] + "?" + urlencode(params), timeout=10)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == ExitCode.FAILURE
    assert "state does not match" in err
    assert _status(capsys)["state"] == "not_authorized"


def test_import_from_stdin_refreshes_at_once(cli_env: dict[str, str], fake_auth: FakeAuthServer,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with fake_auth.lock:
        elsewhere = fake_auth.mint()["refresh_token"]
    monkeypatch.setattr(sys, "stdin", io.StringIO(elsewhere + "\n"))
    assert main(["auth", "import"]) == ExitCode.OK
    info = _status(capsys)
    assert info["state"] == "ok" and info["generation"] == 2 and fake_auth.count("refreshes") == 1
    monkeypatch.setattr(sys, "stdin", io.StringIO("a-dead-token\n"))
    assert main(["auth", "import"]) == ExitCode.REAUTH_REQUIRED


def test_no_token_or_secret_in_logs_or_errors(cli_env: dict[str, str], fake_auth: FakeAuthServer,
                                              monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    secret = "s3cret-client-value-xyz"
    monkeypatch.setenv("LEADSYNC_CLIENT_SECRET", secret)
    caplog.set_level(logging.DEBUG)  # urllib3 and everything else included
    assert main(["auth", "device"]) == ExitCode.OK
    assert main(["auth", "refresh"]) == ExitCode.OK
    fake_auth.state.faults = [503]
    assert main(["auth", "refresh"]) == ExitCode.FAILURE
    fake_auth.revoke_all_refresh_tokens()
    assert main(["auth", "refresh"]) == ExitCode.REAUTH_REQUIRED
    assert main(["auth", "status"]) == ExitCode.REAUTH_REQUIRED
    captured = capsys.readouterr()
    text = "\n".join([caplog.text, captured.out, captured.err,
                      *(str(r.exc_info[1]) for r in caplog.records if r.exc_info)])
    secrets = [secret, *fake_auth.state.issued_access, *fake_auth.state.issued_refresh]
    assert len(secrets) >= 5 and "reauth_required" in text
    leaked = [s[:8] for s in secrets if s in text]
    assert leaked == []
