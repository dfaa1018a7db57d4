"""The Celery app: `celery -A worker worker` starts, consumes both queues, and keeps the
at-least-once settings the delivery guarantees rely on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from worker.base.names import CONTROL_QUEUE, LEADS_QUEUE
from worker.celery import make_app

REPO = Path(__file__).resolve().parents[1]


def test_at_least_once_settings(make_settings) -> None:
    app = make_app(make_settings(visibility_timeout_s=1800, backoff_max_s=900))
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] == 1800
    assert conf.task_default_queue == LEADS_QUEUE
    assert {q.name for q in conf.task_queues} == {LEADS_QUEUE, CONTROL_QUEUE}
    # A long Redis outage must never stop a worker or beat: they retry without limit.
    assert conf.broker_connection_retry is True
    assert conf.broker_connection_max_retries is None


def test_refresh_runs_on_beat_on_its_own_queue(make_settings) -> None:
    app = make_app(make_settings(refresh_interval_s=7))
    entry = app.conf.beat_schedule["leadsync-refresh-token"]
    assert entry["task"] == "leadsync.refresh_token"
    assert entry["schedule"] == 7
    # A backlog of leads must never delay a token refresh.
    assert app.conf.task_routes["leadsync.refresh_token"]["queue"] == CONTROL_QUEUE


@pytest.fixture
def celery_worker_process(redis_url: str) -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "LEADSYNC_REDIS_URL": redis_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker", "worker", "--pool", "solo",
         "--loglevel", "INFO", "--without-mingle", "--without-gossip"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    yield proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()  # an unclosed pipe is an unraisable ResourceWarning (an error here)


def test_celery_a_worker_starts_and_answers_ping(
    redis_url: str, make_settings, celery_worker_process: subprocess.Popen[str]
) -> None:
    app = make_app(make_settings(redis_url=redis_url))
    deadline = time.monotonic() + 60
    replies: list[dict[str, object]] = []
    while time.monotonic() < deadline and not replies:
        assert celery_worker_process.poll() is None, celery_worker_process.stdout.read()  # type: ignore[union-attr]
        replies = app.control.ping(timeout=0.5) or []
    assert replies, "celery -A worker worker did not answer a ping within 60 s"
    inspect = app.control.inspect(timeout=2)
    registered = next(iter((inspect.registered() or {}).values()))
    assert "leadsync.sync_lead" in registered
    assert "leadsync.refresh_token" in registered
    queues = {q["name"] for q in next(iter((inspect.active_queues() or {}).values()))}
    assert {LEADS_QUEUE, CONTROL_QUEUE} <= queues
    app.close()
