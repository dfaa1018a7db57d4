"""`leadsync auth ...` against the sandbox (Constant Contact's behaviour), as a person runs it:
login with PKCE for a public and a confidential client, the device flow denied, and a device
code the server declares expired (`expired_token`, exit 8). test_cli_flows.py covers the rest."""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import redis
import requests

from tests.fixtures.tokens import cli_status, start_login
from worker.cli import main
from worker.cli.exit_codes import ExitCode

pytestmark = pytest.mark.redis


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
    proc, url = start_login(env)
    query = parse_qs(urlparse(url).query)
    assert query["code_challenge_method"] == ["S256"] and query["state"]
    assert query["scope"] == ["contact_data offline_access"]
    page = requests.get(url, timeout=10)  # the browser: consent (auto-approved), then callback
    assert page.status_code == 200 and "Authorization received" in page.text
    _, err = proc.communicate(timeout=30)
    proc.stdout.close()  # type: ignore[union-attr]
    assert proc.returncode == 0, err
    info = cli_status(capsys)
    assert info["state"] == "ok" and info["generation"] == 1
    assert info["platform_user_id"] == "6f9b2c1e-1c1d-4a8e-9a55-3b1c0c5e7d21"
    assert main(["auth", "refresh"]) == ExitCode.OK
    assert cli_status(capsys)["refresh_token_mode"] == "rotating"
    assert sandbox.stats()["invalid_grant"] == 0


def test_device_flow_denied_in_the_sandbox(make_sandbox: Any, point_at: Any,
                                           redis_client: redis.Redis) -> None:
    sandbox = make_sandbox(device_interval_s=0.2, token_rate_limit_per_s=0)
    point_at(sandbox)
    def deny_when_asked() -> None:
        for _ in range(200):
            if sandbox.deny_device():
                return
            time.sleep(0.05)

    denier = threading.Thread(target=deny_when_asked)
    denier.start()
    assert main(["auth", "device"]) == ExitCode.ACCESS_DENIED
    denier.join(15)


def test_device_code_the_server_expires_exits_8(make_sandbox: Any, point_at: Any,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    # The code is valid for 600 s; the sandbox clock jumps past that after the first poll, so
    # the CLI (whose own deadline is 10 minutes away) stops on the server's `expired_token`.
    sandbox = make_sandbox(device_interval_s=1, device_expires_in_s=600,
                           token_rate_limit_per_s=0)
    point_at(sandbox)

    def expire_after_first_poll() -> None:
        deadline = time.monotonic() + 30
        while sandbox.stats()["token_requests"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        sandbox.advance_clock(601)

    mover = threading.Thread(target=expire_after_first_poll, daemon=True)
    mover.start()
    started = time.monotonic()
    assert main(["auth", "device"]) == ExitCode.EXPIRED
    assert time.monotonic() - started < 30  # the server's answer, not the local deadline
    mover.join(5)
    assert sandbox.stats()["requests_by_status"]["400"] == 2  # authorization_pending, expired
    err = capsys.readouterr().err
    assert "expired" in err and "leadsync auth device" in err
    assert cli_status(capsys)["state"] == "not_authorized"
