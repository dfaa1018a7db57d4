"""Issue 9: a Redis that would lose leads or tokens is named, at worker start, by `leadsync
health` (non-zero) and by `leadsync status`. Each case is a private redis-server configured
that way (the suite's own server runs with AOF, so it passes)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.fixtures.ops import REPO, wait_for
from worker.cli import main
from worker.cli.exit_codes import ExitCode
from worker.demo.embedded_redis import EmbeddedRedis

pytestmark = pytest.mark.redis

NO_PERSISTENCE = "Redis has no persistence (appendonly no, save '')"
EVICTION = "Redis maxmemory-policy is allkeys-lru"


@pytest.fixture
def private_redis() -> Iterator[Callable[..., EmbeddedRedis]]:
    """private_redis(appendonly=..., extra_args=...) starts one; all stopped afterwards."""
    servers: list[EmbeddedRedis] = []

    def start(**options: Any) -> EmbeddedRedis:
        server = EmbeddedRedis(**options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def _health(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, url: str,
            **env: str) -> tuple[int, list[str]]:
    monkeypatch.setenv("LEADSYNC_REDIS_URL", url)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main(["health", "--no-worker-check", "--no-token-check"])
    return code, capsys.readouterr().out.splitlines()


def test_health_fails_on_a_redis_without_persistence_unless_opted_out(
    private_redis: Callable[..., EmbeddedRedis], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    volatile = private_redis(appendonly=False)  # --save '' --appendonly no
    code, lines = _health(capsys, monkeypatch, volatile.url)
    assert code == ExitCode.UNHEALTHY
    storage = next(line for line in lines if line.split()[1] == "storage")
    assert storage.startswith("FAIL") and NO_PERSISTENCE in storage
    assert "appendonly yes" in storage  # the fix is named too

    code, lines = _health(capsys, monkeypatch, volatile.url,
                          LEADSYNC_ALLOW_VOLATILE_REDIS="true")
    assert code == ExitCode.OK
    storage = next(line for line in lines if line.split()[1] == "storage")
    assert storage.startswith("WARN") and "LEADSYNC_ALLOW_VOLATILE_REDIS=true" in storage


def test_health_fails_on_a_redis_that_evicts_even_with_aof(
    private_redis: Callable[..., EmbeddedRedis], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    evicting = private_redis(appendonly=True, extra_args=("--maxmemory-policy", "allkeys-lru"))
    code, lines = _health(capsys, monkeypatch, evicting.url)
    assert code == ExitCode.UNHEALTHY
    storage = next(line for line in lines if line.split()[1] == "storage")
    assert EVICTION in storage and NO_PERSISTENCE not in storage
    assert "noeviction" in storage


def test_health_and_status_pass_with_aof_on(
    redis_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, lines = _health(capsys, monkeypatch, redis_url)  # the suite's server: AOF on
    assert code == ExitCode.OK
    assert "ok    storage persistence on, maxmemory-policy noeviction" in lines
    assert main(["status", "--json"]) == ExitCode.OK
    status = json.loads(capsys.readouterr().out)
    assert status["redis_check"]["state"] == "ok"


def test_status_shows_a_volatile_redis(
    private_redis: Callable[..., EmbeddedRedis], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    volatile = private_redis(appendonly=False)
    monkeypatch.setenv("LEADSYNC_REDIS_URL", volatile.url)
    assert main(["status"]) == ExitCode.OK  # status reports; health is the probe
    text = capsys.readouterr().out
    assert "redis storage" in text and NO_PERSISTENCE in text


def test_a_redis_with_config_disabled_is_a_warning_could_not_check(
    private_redis: Callable[..., EmbeddedRedis], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    managed = private_redis(appendonly=False, extra_args=("--rename-command", "CONFIG", ""))
    code, lines = _health(capsys, monkeypatch, managed.url)
    assert code == ExitCode.OK
    storage = next(line for line in lines if line.split()[1] == "storage")
    assert storage.startswith("WARN") and "could not check" in storage


@pytest.mark.parametrize(("options", "expected"), [
    ({"appendonly": False}, NO_PERSISTENCE),
    ({"appendonly": True, "extra_args": ("--maxmemory-policy", "allkeys-lru")}, EVICTION),
    ({"appendonly": True}, None),
])
def test_the_worker_names_the_problem_in_its_start_up_log(
    private_redis: Callable[..., EmbeddedRedis], spawned: Any, options: dict[str, Any],
    expected: str | None,
) -> None:
    server = private_redis(**options)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LEADSYNC_")},
           "LEADSYNC_REDIS_URL": server.url, "PYTHONUNBUFFERED": "1"}
    spawned.start("w", ["celery", "-A", "worker", "worker", "--pool=solo", "--without-mingle",
                        "--without-gossip", "--loglevel=INFO", "--hostname=check@%h"],
                  env, cwd=REPO)
    log = wait_for(lambda: "ready." in spawned.log("w") and spawned.log("w"), 60,
                   "the worker to be ready")
    # The check runs as the worker becomes ready: its lines follow within moments.
    marker = "Redis is not safe" if expected else "ready."
    log = wait_for(lambda: marker in spawned.log("w") and spawned.log("w"), 20,
                   "the start-up check")
    errors = [line for line in log.splitlines() if "Redis is not safe" in line]
    if expected is None:
        assert errors == []
    else:
        assert len(errors) == 1 and "ERROR" in errors[0] and expected in errors[0]
        assert "LEADSYNC_ALLOW_VOLATILE_REDIS=true" in errors[0]
