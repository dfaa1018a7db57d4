"""`leadsync health` and `leadsync status` against a private Redis, as a probe or a person
would run them (the real CLI entry point, real Redis, a real worker for the ping)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis

from worker.account import Account
from worker.auth.token_record import STATE_REAUTH_REQUIRED, TokenRecord
from worker.base.names import LEADS_QUEUE
from worker.base.priority import BACKLOG_PRIORITY, HANDED_ON_PRIORITY, list_for
from worker.bulk.backlog import TAKE_SCRIPT
from worker.cli import main
from worker.cli.exit_codes import ExitCode
from worker.demo.embedded_redis import free_port
from worker.leads.enqueue import enqueue_leads

pytestmark = pytest.mark.redis


def _store_tokens(settings: Any, client: redis.Redis, lifetime_s: float = 3600) -> None:
    now = time.time()
    Account(settings, client).tokens.replace(0, TokenRecord(
        access_token="access-secret-xyz", refresh_token="refresh-secret-xyz", issued_at=now,
        expires_at=now + lifetime_s, scopes="contact_data offline_access", authorized_at=now))


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, out.splitlines()


def test_health_redis_unreachable_exits_redis_unavailable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEADSYNC_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    code, lines = _run(capsys, "health")
    assert code == ExitCode.REDIS_UNAVAILABLE
    assert lines[0].startswith("FAIL  redis")


def test_health_no_worker_is_unhealthy_unless_the_check_is_skipped(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    monkeypatch.setenv("LEADSYNC_REDIS_URL", redis_url)
    started = time.monotonic()
    code, lines = _run(capsys, "health", "--timeout", "0.5")
    assert time.monotonic() - started < 10, "a probe must answer quickly"
    assert code == ExitCode.UNHEALTHY
    assert [line.split()[:2] for line in lines] == [["ok", "redis"], ["ok", "storage"],
                                                    ["FAIL", "worker"], ["ok", "token"]]
    code, lines = _run(capsys, "health", "--no-worker-check")
    assert code == ExitCode.OK
    assert lines[2].split()[:2] == ["skip", "worker"]


def test_health_fails_when_a_person_must_reauthorize(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], redis_url: str,
    redis_client: redis.Redis, make_settings: Any,
) -> None:
    monkeypatch.setenv("LEADSYNC_REDIS_URL", redis_url)
    settings = make_settings(redis_url=redis_url)
    _store_tokens(settings, redis_client)
    code, lines = _run(capsys, "health", "--no-worker-check")
    assert code == ExitCode.OK and lines[-1].split()[:3] == ["ok", "token", "ok"]
    Account(settings, redis_client).tokens.update(1, state=STATE_REAUTH_REQUIRED,
                                              state_reason="invalid_grant")
    code, lines = _run(capsys, "health", "--no-worker-check")
    assert code == ExitCode.UNHEALTHY
    assert lines[-1].startswith("FAIL  token") and "leadsync auth device" in lines[-1]
    # A liveness probe leaves the token out: restarting cannot fix it.
    code, _ = _run(capsys, "health", "--no-worker-check", "--no-token-check")
    assert code == ExitCode.OK


def test_status_shows_token_time_left_and_queue_depth_without_secrets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], redis_url: str,
    redis_client: redis.Redis, make_settings: Any,
) -> None:
    monkeypatch.setenv("LEADSYNC_REDIS_URL", redis_url)
    settings = make_settings(redis_url=redis_url)
    _store_tokens(settings, redis_client, lifetime_s=7200)
    leads = [{"email": f"status.{i}@example.org", "first_name": "Ada"} for i in range(7)]
    report = enqueue_leads(leads, settings=settings, redis=redis_client)
    assert report.enqueued == 7

    code, lines = _run(capsys, "status", "--json")
    assert code == ExitCode.OK
    status = json.loads("\n".join(lines))
    assert status["queues"]["leads"] == 7
    assert status["token"]["state"] == "ok"
    assert 7000 < status["token"]["access_token_seconds_left"] <= 7200

    code, lines = _run(capsys, "status")
    text = "\n".join(lines)
    assert code == ExitCode.OK
    assert "leads 7 waiting" in text
    assert "expires in 1h 59m" in text or "expires in 2h 00m" in text
    for secret in ("access-secret-xyz", "refresh-secret-xyz", "status.0@example.org"):
        assert secret not in text and secret not in json.dumps(status)


def test_status_counts_the_backlog_entries_the_bulk_stager_holds(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], redis_url: str,
    redis_client: redis.Redis, make_settings: Any,
) -> None:
    # A stager's take step moved 5 of 7 backlog leads to its holding list, and its run died:
    # they are off every queue list, and status still counts them until they are given back.
    monkeypatch.setenv("LEADSYNC_REDIS_URL", redis_url)
    settings = make_settings(redis_url=redis_url)
    leads = [{"email": f"held.{i}@example.org", "consent": False} for i in range(7)]
    assert enqueue_leads(leads, settings=settings, redis=redis_client).enqueued == 7
    account = Account(settings, redis_client)
    bulk = account.keys.bulk
    lock = redis_client.lock(bulk.lock, timeout=60, blocking=False)
    assert lock.acquire()
    lists = [bulk.lock, list_for(LEADS_QUEUE, BACKLOG_PRIORITY), bulk.holding,
             list_for(LEADS_QUEUE, HANDED_ON_PRIORITY)]
    assert TAKE_SCRIPT.run(redis_client, lists, [lock.local.token, 5, 0]) == 5

    code, lines = _run(capsys, "status", "--json")
    status = json.loads("\n".join(lines))
    assert code == ExitCode.OK
    assert status["queues"]["leads"] == status["leads"]["queued"] == 2
    assert status["leads"]["bulk_holding"] == 5
    code, lines = _run(capsys, "status")
    assert "leads 2 waiting (+5 held by the bulk stager)" in "\n".join(lines)
    assert [line.split()[2:] for line in lines if line.split()[:2] == ["bulk", "holding"]] == [
        ["5"]]

    assert account.backlog_stager().give_back() == 5  # as the next holder does
    lock.release()
    code, lines = _run(capsys, "status", "--json")
    status = json.loads("\n".join(lines))
    assert (status["leads"]["queued"], status["leads"]["bulk_holding"]) == (7, 0)
    _, lines = _run(capsys, "status")
    assert "held by the bulk stager" not in "\n".join(lines)


def test_status_redis_down_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEADSYNC_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    code = main(["status"])
    err = capsys.readouterr().err
    assert code == ExitCode.REDIS_UNAVAILABLE
    assert len(err.strip().splitlines()) == 1 and "Redis unavailable" in err
