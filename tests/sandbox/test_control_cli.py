"""Control over HTTP, the `leadsync sandbox` command, and robustness: bad requests get
Constant Contact's shapes, never a traceback or a hang."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.fixtures.sandbox import CC
from worker.cli import main
from worker.demo.embedded_redis import free_port
from worker.sandbox import SandboxConfig, SandboxServer


def test_control_routes_over_http(cc: CC) -> None:
    base = f"{cc.server.url}/_sandbox"
    cc.sign_up("a@b.co")
    stats = requests.get(f"{base}/stats", timeout=10).json()
    assert stats["contacts"]["count"] == 1 and stats["api_requests"] == 1
    assert stats["requests_by_status"]["201"] == 1 and stats["token_requests"] == 1
    contacts = requests.get(f"{base}/contacts", timeout=10).json()["contacts"]
    assert contacts[0]["email_address"]["address"] == "a@b.co"
    before = cc.server.state.clock.now()
    moved = requests.post(f"{base}/clock", json={"advance_s": 3600}, timeout=10).json()
    assert moved["now"] >= before + 3600
    kids = requests.post(f"{base}/rotate-keys", timeout=10).json()["kids"]
    assert {k["kid"] for k in requests.get(cc.env["LEADSYNC_JWKS_URL"],
                                           timeout=10).json()["keys"]} == set(kids)
    device = cc.device_authorize()
    approved = requests.post(f"{base}/device/approve", json={}, timeout=10).json()
    assert approved["approved"] == [device["user_code"]]
    assert requests.post(f"{base}/revoke-refresh-tokens", timeout=10).json()["revoked"] >= 1
    assert requests.post(f"{base}/reset", timeout=10).json() == {"reset": True}
    assert requests.get(f"{base}/stats", timeout=10).json()["contacts"]["count"] == 0
    assert requests.get(f"{base}/faults", timeout=10).status_code == 405
    assert requests.post(f"{base}/nope", timeout=10).status_code == 404
    assert requests.post(f"{base}/clock", data="[", timeout=10).status_code == 400


def test_settings_env_points_a_worker_at_the_sandbox(sandbox: SandboxServer) -> None:
    env = sandbox.settings_env()
    assert env["LEADSYNC_API_BASE_URL"] == f"{sandbox.url}/v3"
    assert env["LEADSYNC_CLIENT_ID"] == "leadsync-sandbox"
    assert env["LEADSYNC_CLIENT_SECRET"] == "sandbox-secret"
    assert env["LEADSYNC_TOKEN_URL"].endswith("/oauth2/default/v1/token")
    assert env["LEADSYNC_JWKS_URL"].endswith("/oauth2/aus1lm3ry9mF7x2Ja0h8/v1/keys")
    lists = SandboxServer(SandboxConfig()).state.store.default_list_id
    assert env["LEADSYNC_LIST_IDS"] == lists  # stable across runs for the same client id


def test_handler_exception_becomes_500_array(cc: CC, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(cc.server.state.lists_api, "lists", broken)
    answer = cc.call("GET", "/contact_lists")
    assert answer.status_code == 500
    assert answer.json() == [{"error_key": "server_error",
                              "error_message": "An internal server error occurred."}]
    assert "Traceback" not in answer.text
    assert cc.call("GET", "/contacts").status_code == 200  # still serving


def _raw(server: SandboxServer, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        conn.sendall(payload)
        chunks = []
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def test_malformed_http_gets_an_answer_not_a_hang(sandbox: SandboxServer) -> None:
    assert _raw(sandbox, b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400")
    chunked = (b"POST /v3/contacts HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"0\r\n\r\n")
    assert _raw(sandbox, chunked).startswith(b"HTTP/1.1 411")
    unknown = requests.get(f"{sandbox.url}/nowhere", timeout=5)
    assert unknown.status_code == 404 and isinstance(unknown.json(), list)
    wrong_method = requests.get(f"{sandbox.url}/oauth2/default/v1/token", timeout=5)
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]


def test_method_not_allowed_on_api_is_405(cc: CC) -> None:
    answer = cc.call("DELETE", "/contact_lists")
    assert answer.status_code == 405 and answer.headers["Allow"] == "GET, POST"
    assert isinstance(answer.json(), list)


def test_keep_alive_connection_serves_many_requests(cc: CC) -> None:
    session = requests.Session()
    for i in range(20):
        answer = session.post(f"{cc.api}/contacts/sign_up_form", timeout=5, json={
            "email_address": f"k{i}@b.co", "list_memberships": [cc.list_id]},
            headers={"Authorization": f"Bearer {cc.access_token}"})
        assert answer.status_code == 201
    assert cc.server.stats()["contacts"]["count"] == 20


def test_cli_print_env(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sandbox", "--port", "9123", "--print-env"]) == 0
    out = capsys.readouterr().out
    assert "export LEADSYNC_API_BASE_URL=http://127.0.0.1:9123/v3" in out
    assert "export LEADSYNC_CLIENT_SECRET=sandbox-secret" in out


def test_cli_rejects_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sandbox", "--fail-rate", "2", "--port", "0"]) != 0
    assert "fail_rate" in capsys.readouterr().err


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_cli_serves_until_ctrl_c_and_exits_0(tmp_path: Path) -> None:
    port = free_port()
    exe = Path(sys.executable).with_name("leadsync")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADSYNC_")}
    # Ctrl-C's signal as a terminal would deliver it: a suite started in the background (`cmd &`
    # in a script, nohup) hands its children SIGINT ignored, and Python keeps it ignored.
    with subprocess.Popen([str(exe), "sandbox", "--port", str(port), "--auto-approve"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                          text=True, cwd=tmp_path, preexec_fn=_sigint_default) as proc:
        try:
            assert proc.stdout is not None
            lines = []
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                line = proc.stdout.readline()
                lines.append(line)
                if "Ctrl-C" in line or not line:
                    break
            text = "".join(lines)
            assert f"http://127.0.0.1:{port}" in text
            assert "export LEADSYNC_TOKEN_URL=" in text
            stats = requests.get(f"http://127.0.0.1:{port}/_sandbox/stats", timeout=5)
            assert json.loads(stats.text)["contacts"]["count"] == 0
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
