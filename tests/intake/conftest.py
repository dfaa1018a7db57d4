"""Fixtures for the intake tests: the app in-process (TestClient) or as a real process.

Both run against the private redis-server; API keys are created the way `leadsync intake keys
create` does (worker.intake.apikeys), and the real process is `python -m worker intake` with
this worktree on PYTHONPATH, polled on /healthz with a deadline.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
import requests
from starlette.testclient import TestClient

from tests.fixtures.ops import REPO, wait_for
from worker.account import Account
from worker.base.scope import Scope
from worker.base.settings import Settings
from worker.demo.embedded_redis import free_port
from worker.intake.apikeys import ApiKeys
from worker.intake.app import create_app

GOOGLE_KEY = "gk-test-0123456789"
WEBHOOK_SECRET = "whsec-test-0123456789abcdef"


@dataclass
class Client:
    """A caller of the intake with its keys (`leads` and `form` scope)."""

    http: Any  # TestClient or requests.Session
    base: str
    key: str
    form_key: str
    settings: Settings
    extra: dict[str, Any] = field(default_factory=dict)

    def post(self, path: str, json: Any = None, *, key: str | None = None,
             headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
        sent = {"Authorization": f"Bearer {key or self.key}", **(headers or {})}
        return self.http.post(self.base + path, json=json, headers=sent, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.http.get(self.base + path, headers={"Authorization": f"Bearer {self.key}"},
                             **kwargs)


def intake_env(redis_url: str, **extra: str) -> dict[str, str]:
    env = {"LEADSYNC_REDIS_URL": redis_url,
           "LEADSYNC_INTAKE_GOOGLE_ADS_KEY": GOOGLE_KEY,
           "LEADSYNC_INTAKE_WEBHOOK_SECRETS": f"billing={WEBHOOK_SECRET}",
           "LEADSYNC_INTAKE_FORM_REDIRECT_ORIGINS": "https://example.com",
           **extra}
    return env


def settings_of(env: dict[str, str]) -> Settings:
    from worker.base.settings import load_settings

    kwargs = {k.removeprefix("LEADSYNC_").lower(): v for k, v in env.items()
              if k.startswith("LEADSYNC_")}
    return load_settings(_env_file=None, **kwargs)


@pytest.fixture
def make_intake(redis_url: str, redis_client: redis.Redis) -> Iterator[Callable[..., Client]]:
    """In-process app on the real private Redis (fast: most behaviour tests)."""
    opened: list[TestClient] = []

    def build(**extra: str) -> Client:
        settings = settings_of(intake_env(redis_url, **extra))
        account = Account(settings, redis_client)
        keys = ApiKeys(account)
        http = TestClient(create_app(account, account.ledger))
        http.__enter__()
        opened.append(http)
        return Client(http, "", keys.create("crm"), keys.create("site", "form"), settings)

    yield build
    for http in opened:
        http.__exit__(None, None, None)


@pytest.fixture
def intake(make_intake: Callable[..., Client]) -> Client:
    return make_intake()


def start_intake_process(spawned: Any, env: dict[str, str], name: str = "intake"
                         ) -> tuple[str, Any]:
    """`python -m worker intake --port <free>` as a child; returns (base url, Popen)."""
    port = free_port()
    child_env = {**{k: v for k, v in os.environ.items() if not k.startswith("LEADSYNC_")},
                 **env, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    proc = spawned.start(name, ["python", "-m", "worker", "intake", "--port", str(port)],
                         child_env, cwd=REPO)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, spawned.log(name)
        try:
            return requests.get(base + "/healthz", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    wait_for(up, 60, "the intake to answer /healthz")
    return base, proc


@pytest.fixture
def intake_process(redis_url: str, redis_client: redis.Redis, spawned: Any
                   ) -> Callable[..., Client]:
    """A real intake process on the private Redis, with a `leads` and a `form` key."""
    def build(**extra: str) -> Client:
        env = intake_env(redis_url, **extra)
        settings = settings_of(env)
        keys = ApiKeys(Scope(settings, redis_client))
        key, form_key = keys.create("crm"), keys.create("site", "form")
        base, proc = start_intake_process(spawned, env)
        return Client(requests.Session(), base, key, form_key, settings,
                      {"proc": proc, "env": env})

    return build
