"""`leadsync demo`: the whole product on one machine, from nothing, in about a minute.

Embedded Redis, the sandbox (rotating refresh tokens, short access tokens, auto-approval), the
real `leadsync auth device` flow, a real Celery worker and beat as child processes, a few hundred
sample leads through worker.leads.enqueue, then a summary. Every child runs in its own process group
and is stopped (TERM, then KILL) on the way out, so nothing survives the demo.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from worker.account import Account
from worker.base.errors import LeadsyncError
from worker.base.redis_conn import get_redis
from worker.base.settings import Settings, load_settings
from worker.demo.children import (  # re-exported: fixtures and benchmarks import them here
    _bin,
    _settings_overrides,
    _terminate_group,
    authorize_device,
    start_sandbox,
)
from worker.demo.embedded_redis import EmbeddedRedis, free_port
from worker.demo.leads import LeadMix, sample_leads
from worker.leads.enqueue import EnqueueReport, enqueue_leads

__all__ = [
    "Child", "Demo", "DemoConfig", "DemoState", "LeadMix",
    "TaskTracker", "_bin", "_settings_overrides", "_terminate_group",
    "authorize_device", "sample_leads", "start_sandbox",
]


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs with; defaults fit in about a minute at the sandbox's 4 requests/s."""

    leads: int = 150
    access_token_lifetime_s: float = 20.0
    rate_limit_per_s: float = 4.0
    concurrency: int = 4
    keep_running: bool = False
    timeout_s: float = 240.0
    seed: int = 7


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: IO[bytes]


@dataclass
class DemoState:
    settings: Settings | None = None
    account: Account | None = None
    env: dict[str, str] = field(default_factory=dict)
    report: EnqueueReport | None = None
    mix: LeadMix = field(default_factory=LeadMix)
    started_at: float = 0.0
    delivery_started_at: float = 0.0
    delivery_done_at: float = 0.0
    flower_url: str | None = None


class TaskTracker(threading.Thread):
    """Counts finished `leadsync.sync_lead` tasks from Celery's own events (the worker runs
    with -E), so progress needs nothing from delivery's internals: a message is done when the
    worker reports it succeeded or failed (a parked or dead-lettered lead also "succeeds")."""

    def __init__(self, app: Any) -> None:
        super().__init__(name="leadsync-demo-events", daemon=True)
        self.app = app
        self.ready = threading.Event()
        self.lock = threading.Lock()
        self.leads: set[str] = set()
        self.finished: set[str] = set()
        self.retried = 0
        self._receiver: Any = None

    def run(self) -> None:
        from celery.events.receiver import EventReceiver

        tracker = self

        class _Receiver(EventReceiver):
            def on_consume_ready(self, *args: Any, **kwargs: Any) -> None:
                super().on_consume_ready(*args, **kwargs)
                tracker.ready.set()

        with self.app.connection_for_read() as conn:
            self._receiver = _Receiver(conn, handlers={"*": self._on_event}, app=self.app)
            self._receiver.capture(limit=None, timeout=None, wakeup=False)

    def _on_event(self, event: dict[str, Any]) -> None:
        kind, uuid = event.get("type", ""), event.get("uuid", "")
        with self.lock:
            if kind == "task-received" and event.get("name") == "leadsync.sync_lead":
                self.leads.add(uuid)
            elif kind == "task-retried" and uuid in self.leads:
                self.retried += 1
            elif kind in ("task-succeeded", "task-failed", "task-rejected") and uuid in self.leads:
                self.finished.add(uuid)

    def done(self) -> int:
        with self.lock:
            return len(self.finished)

    def stop(self) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        self.join(timeout=5)


class Demo:
    """Owns every process the demo starts; `close()` (or the `with` block) stops them all."""

    def __init__(self, config: DemoConfig, *, say: Callable[[str], None] = print) -> None:
        self.config = config
        self.say = say
        self.state = DemoState()
        self.workdir = Path(tempfile.mkdtemp(prefix="leadsync-demo-"))
        self.redis: EmbeddedRedis | None = None
        self.sandbox: Any = None
        self.children: list[Child] = []

    # --- start ---------------------------------------------------------------------------
    def start(self) -> None:
        self.state.started_at = time.monotonic()
        self.redis = EmbeddedRedis(appendonly=False).start()
        self.say(f"redis      embedded redis-server on {self.redis.url} (pid {self.redis.pid})")
        self._start_sandbox()
        # A throw-away Redis without AOF/RDB: fine for a demo, an ERROR anywhere else.
        self.state.env["LEADSYNC_ALLOW_VOLATILE_REDIS"] = "true"
        self.say("redis      no persistence (demo only): LEADSYNC_ALLOW_VOLATILE_REDIS=true turns "
                 "the worker's start-up ERROR and a failing `leadsync health` into warnings")
        self.state.settings = load_settings(_env_file=None, **_settings_overrides(self.state.env))
        self.authorize()
        self._spawn("worker", ["celery", "-A", "worker", "worker", "-E", "--without-mingle",
                               "--without-gossip", f"--concurrency={self.config.concurrency}",
                               "--hostname=demo-worker@%h"])
        self._spawn("beat", ["celery", "-A", "worker", "beat",
                             f"--schedule={self.workdir / 'celerybeat-schedule'}"])

    def _start_sandbox(self) -> None:
        assert self.redis is not None
        self.sandbox, self.state.env = start_sandbox(
            self.redis.url, lifetime_s=self.config.access_token_lifetime_s,
            rate_limit_per_s=self.config.rate_limit_per_s)
        self.say(f"sandbox    local Constant Contact at {self.sandbox.url} (rotating refresh "
                 f"tokens, {self.config.access_token_lifetime_s:g} s access tokens, "
                 f"{self.config.rate_limit_per_s:g} requests/s, auto-approve)")

    def authorize(self) -> None:
        authorize_device(self.state.env, self.workdir / "auth-device.log")
        self.say("authorize  `leadsync auth device` approved by the sandbox; tokens stored")

    def _spawn(self, name: str, argv: list[str]) -> Child:
        log = (self.workdir / f"{name}.log").open("wb")
        argv = [_bin(argv[0]), *argv[1:]]
        proc = subprocess.Popen(argv, env=self.state.env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        child = Child(name, proc, log)
        self.children.append(child)
        self.say(f"{name:<10} {' '.join(argv[1:4])} ... (process group {proc.pid})")
        return child

    def start_flower(self) -> str:
        port = free_port()
        self.state.env["FLOWER_UNAUTHENTICATED_API"] = "true"  # local demo only, 127.0.0.1
        self._spawn("flower", ["celery", "-A", "worker", "flower", "--address=127.0.0.1",
                               f"--port={port}"])
        self.state.flower_url = f"http://127.0.0.1:{port}"
        return self.state.flower_url

    # --- run -----------------------------------------------------------------------------
    def enqueue(self) -> EnqueueReport:
        rows, mix = sample_leads(self.config.leads, self.config.seed)
        self.state.mix = mix
        self.state.delivery_started_at = time.monotonic()
        report = enqueue_leads(rows, settings=self.settings, redis=self.account.redis)
        self.state.report = report
        return report

    @property
    def settings(self) -> Settings:
        assert self.state.settings is not None
        return self.state.settings

    @property
    def account(self) -> Account:
        """The demo's Account (its embedded Redis), built once."""
        if self.state.account is None:
            self.state.account = Account(self.settings, get_redis(self.settings))
        return self.state.account

    def check_children(self) -> None:
        for child in self.children:
            code = child.proc.poll()
            if code is not None:
                raise LeadsyncError(f"the {child.name} stopped (exit {code}); see "
                                    f"{self.workdir / (child.name + '.log')}")

    # --- stop ----------------------------------------------------------------------------
    def close(self) -> None:
        for child in reversed(self.children):
            _terminate_group(child.proc)
            child.log.close()
        self.children.clear()
        if self.sandbox is not None:
            self.sandbox.stop()
            self.sandbox = None
        if self.redis is not None:
            self.redis.stop()
            self.redis = None

    def remove_workdir(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Demo:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
