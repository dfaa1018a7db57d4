"""A stand-in Celery app for producer tests: `leadsync.sync_lead` on queue `leads` that only
records what it received (args, kwargs, argsrepr) in Redis, so the wire contract is proven by a
real `celery worker` independently of the delivery code (same transport guard and redaction
hook as worker.celery).

    LEADSYNC_REDIS_URL=redis://127.0.0.1:PORT/5 celery -A tests.leads.probe_app worker --pool solo
"""

from __future__ import annotations

import json
import os
from typing import Any

import redis
from celery import Celery, Task
from kombu import Queue

import worker.broker.publish_hooks  # noqa: F401  # the same argsrepr redaction as worker.celery
from worker.broker.guard import GUARD_OPTION, GuardConfig

BROKER_URL = os.environ.get("LEADSYNC_REDIS_URL", "redis://127.0.0.1:1/0")
RECEIVED_KEY = "probe:received"

# The same message guards as worker.celery (worker/broker/guard.py): the probe's survival of broken
# entries is then the real worker's.
app = Celery("leadsync-probe", broker=BROKER_URL, task_cls="worker.broker.guard:LeadsyncTask")
app.conf.update(
    broker_transport="worker.broker.guard:GuardedTransport",
    task_default_queue="leads",
    task_queues=[Queue("leads")],
    task_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    # As make_app does: the guard judges task messages on `leads` against this app's tasks.
    broker_transport_options={GUARD_OPTION: GuardConfig(
        task_queues=frozenset({"leads"}), task_names=lambda: frozenset(app.tasks))},
)
_client = redis.Redis.from_url(BROKER_URL)


@app.task(name="leadsync.sync_lead", bind=True)
def sync_lead(self: Task[Any, None], *args: Any, **kwargs: Any) -> None:
    """Record exactly what arrived; the test compares it with what was pushed."""
    record = {
        "id": self.request.id,
        "args": list(args),
        "kwargs": kwargs,
        "argsrepr": getattr(self.request, "argsrepr", None),
        "retries": self.request.retries,
    }
    _client.rpush(RECEIVED_KEY, json.dumps(record))
