"""`leadsync auth ...` end to end against the sandbox and the private Redis: the device flow
with a `slow_down`, status, refresh, logout (both tokens dead at the server afterwards), a forged
login state, import, and a full authorize + refresh + failure run whose logs and errors must
hold no token or secret."""

from __future__ import annotations

import io
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
import redis
import requests

from tests.fixtures.sandbox import CC
from tests.fixtures.tokens import HOUR_S, cli_status, issued_tokens, start_login
from worker.account import Account
from worker.base.settings import load_settings
from worker.cli import main
from worker.cli.exit_codes import ExitCode
from worker.sandbox import SandboxServer

pytestmark = pytest.mark.redis


def _approve_after(sandbox: SandboxServer, token_requests: int) -> threading.Thread:
    """Approve the pending device request once the CLI has polled `token_requests` times."""

    def run() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if sandbox.stats()["token_requests"] >= token_requests and sandbox.approve_device():
                return
            time.sleep(0.05)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_device_flow_slow_down_status_refresh_logout(
        make_sandbox: Callable[..., SandboxServer], point_at: Any, redis_client: redis.Redis,
        capsys: pytest.CaptureFixture[str]) -> None:
    # The sandbox asks for 1.9 s between polls but announces int(1.9) = 1 s, so the CLI's
    # second poll gets `slow_down`; approved then, the CLI only comes back after 1 + 5 s.
    sandbox = make_sandbox(device_interval_s=1.9, access_token_lifetime_s=HOUR_S,
                           token_rate_limit_per_s=0)
    point_at(sandbox)
    assert main(["auth", "status"]) == ExitCode.NOT_AUTHORIZED
    approver = _approve_after(sandbox, token_requests=2)
    started = time.monotonic()
    assert main(["auth", "device"]) == ExitCode.OK
    assert time.monotonic() - started >= 7.5  # 1 s, 1 s, then 6 s after the slow_down
    approver.join(5)
    out = capsys.readouterr().out
    assert "enter the code" in out and "user_code=" in out
    assert sandbox.stats()["requests_by_status"]["400"] == 2  # pending, slow_down
    info = cli_status(capsys)
    assert info["state"] == "ok" and info["generation"] == 1
    assert info["sub"] == "owner@sandbox.invalid"
    assert info["platform_user_id"] == sandbox.config.platform_user_id
    assert info["scopes"] == ["contact_data", "offline_access"]
    assert info["refresh_token_mode"] == "unknown"
    assert 3500 < info["access_token_seconds_left"] <= 3600
    assert main(["auth", "refresh"]) == ExitCode.OK
    info = cli_status(capsys)
    assert (info["generation"], info["refresh_token_mode"]) == (2, "rotating")
    assert info["last_refresh_at"] is not None and info["next_refresh_at"] > info["last_refresh_at"]
    record = Account(load_settings(), redis_client).tokens.read()
    assert record is not None
    cc = CC(sandbox)
    assert cc.call("GET", "/contact_lists", token=record.access_token).status_code == 200
    assert main(["auth", "logout"]) == ExitCode.OK
    assert cli_status(capsys)["state"] == "not_authorized"
    # Revoked at the server, not just forgotten here.
    assert cc.call("GET", "/contact_lists", token=record.access_token).status_code == 401
    dead = cc.refresh(record.refresh_token)
    assert dead.status_code == 400 and dead.json()["error"] == "invalid_grant"


def test_login_rejects_a_wrong_state(make_sandbox: Callable[..., SandboxServer], point_at: Any,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    env = point_at(make_sandbox(auto_approve=True, token_rate_limit_per_s=0))
    proc, url = start_login(env)
    redirect = requests.get(url, allow_redirects=False, timeout=10).headers["Location"]
    params = {k: v[0] for k, v in parse_qs(urlparse(redirect).query).items()}
    assert params["code"]
    params["state"] = "forged"
    requests.get(redirect.split("?")[0] + "?" + urlencode(params), timeout=10)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == ExitCode.FAILURE
    assert "state does not match" in err
    assert cli_status(capsys)["state"] == "not_authorized"


def test_import_from_stdin_refreshes_at_once(make_sandbox: Callable[..., SandboxServer],
                                             point_at: Any, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    sandbox = make_sandbox(token_rate_limit_per_s=0)
    point_at(sandbox)
    elsewhere = CC(sandbox).authorize()["refresh_token"]  # got by another tool
    monkeypatch.setattr(sys, "stdin", io.StringIO(elsewhere + "\n"))
    assert main(["auth", "import"]) == ExitCode.OK
    info = cli_status(capsys)
    assert info["state"] == "ok" and info["generation"] == 2
    assert sandbox.stats()["refreshes"] == 1
    monkeypatch.setattr(sys, "stdin", io.StringIO("a-dead-token\n"))
    assert main(["auth", "import"]) == ExitCode.REAUTH_REQUIRED


def test_no_token_or_secret_in_logs_or_errors(make_sandbox: Callable[..., SandboxServer],
                                              point_at: Any,
                                              caplog: pytest.LogCaptureFixture,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    secret = "s3cret-client-value-xyz"
    sandbox = make_sandbox(client_secret=secret, auto_approve=True, device_interval_s=1,
                           token_rate_limit_per_s=0)
    point_at(sandbox)
    caplog.set_level(logging.DEBUG)  # urllib3 and everything else included
    assert main(["auth", "device"]) == ExitCode.OK
    assert main(["auth", "refresh"]) == ExitCode.OK
    sandbox.set_faults(fail_rate=1.0)
    assert main(["auth", "refresh"]) == ExitCode.FAILURE
    sandbox.set_faults(fail_rate=0.0)
    sandbox.revoke_refresh_tokens()
    assert main(["auth", "refresh"]) == ExitCode.REAUTH_REQUIRED
    assert main(["auth", "status"]) == ExitCode.REAUTH_REQUIRED
    captured = capsys.readouterr()
    text = "\n".join([caplog.text, captured.out, captured.err,
                      *(str(r.exc_info[1]) for r in caplog.records if r.exc_info)])
    secrets = [secret, *issued_tokens(sandbox)]
    assert len(secrets) >= 5 and "reauth_required" in text
    leaked = [s[:8] for s in secrets if s in text]
    assert leaked == []
