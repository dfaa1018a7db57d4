"""The Celery app (`celery -A worker worker|beat|flower`): delivery guarantees live in this config.

At least once: late acks, reject on worker loss, prefetch 1; retries wait in Redis's schedule
(worker/ledger/schedule.py), promoted by a bootstep in every worker (worker/broker/promoter.py),
never as ETA messages. A short visibility timeout, made safe by a heartbeat on the messages a
live worker holds (worker/broker/heartbeat.py), gives a dead worker's leads back within a
minute. Token refreshes travel on their own queue so a backlog of leads never delays them.
"""

from __future__ import annotations

import sys
from typing import Any

from celery import Celery
from kombu import Queue

import worker.base.logging_hooks  # worker and beat log through worker.base.log (scrubbed)
import worker.broker.publish_hooks  # connects the before_task_publish redaction
import worker.broker.startup_checks  # noqa: F401  # checks the broker Redis when a worker is ready
from worker.account import Account
from worker.base.errors import ConfigError
from worker.base.keys import Keys
from worker.base.names import (
    BULK_IMPORT,
    CONTROL_QUEUE,
    LEADS_QUEUE,
    RECONCILE,
    REFRESH_TOKEN,
    RESUME_PARKED,
)
from worker.base.settings import Settings
from worker.broker.event_batches import BatchedEvents
from worker.broker.fetch_contract import kombu_contract_problem
from worker.broker.guard import GUARD_OPTION, GuardConfig
from worker.broker.heartbeat import SWEEP_MUTEX_S, UnackedHeartbeat, sweep_interval_s
from worker.broker.promoter import promoter_step

TASK_MODULES = ["worker.tasks.leads", "worker.tasks.tokens", "worker.tasks.bulk"]
MIN_TICK_EXPIRY_S = 30.0


def make_app(settings: Settings) -> Celery:
    """Build the app from settings (tests build their own against a private Redis)."""
    problem = kombu_contract_problem()  # the reliable fetch overrides kombu's private methods
    if problem is not None:
        raise ConfigError(problem)
    app = Celery(
        "leadsync",
        broker=settings.redis_url,
        include=TASK_MODULES,
        # Unreadable bodies: rejected and kept, no crash.
        task_cls="worker.broker.guard:LeadsyncTask",
    )
    visibility = settings.visibility_timeout_s
    # Raw producers can push anything: these transports move unreadable entries aside, and
    # fetch so that a killed worker cannot lose a message (worker/broker/fetch.py).
    if settings.redis_url.startswith(("redis://", "rediss://")):
        app.conf.broker_transport = "worker.broker.guard:GuardedTransport"
    elif settings.redis_url.startswith("sentinel://"):
        app.conf.broker_transport = "worker.broker.guard:GuardedSentinelTransport"
    app.conf.update(
        task_default_queue=LEADS_QUEUE,
        task_queues=[Queue(LEADS_QUEUE), Queue(CONTROL_QUEUE)],
        task_routes={REFRESH_TOKEN: {"queue": CONTROL_QUEUE},
                     RESUME_PARKED: {"queue": CONTROL_QUEUE},
                     RECONCILE: {"queue": CONTROL_QUEUE},
                     BULK_IMPORT: {"queue": CONTROL_QUEUE}},
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        timezone="UTC",
        enable_utc=True,
        worker_send_task_events=True,
        # The task-sent event is built from Celery's own repr before before_task_publish can
        # redact it: it would carry the lead in clear. Flower works from the worker's events.
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
        # Read by worker/broker/startup_checks.py: a Redis without persistence is then a warning
        # only.
        leadsync_allow_volatile_redis=settings.allow_volatile_redis,
        broker_connection_retry_on_startup=True,
        # Never give up on Redis. After Celery's default of 100 attempts (waits growing to 30 s:
        # about 45 minutes) kombu raises OperationalError, which the worker's consumer does not
        # treat as recoverable (the worker exits) and beat's remote-control thread stops for good.
        broker_connection_retry=True,
        broker_connection_max_retries=None,
        broker_transport_options={
            "visibility_timeout": visibility,
            # Sweep for messages whose holder stopped its heartbeat (kill -9, lost machine)
            # every V/6 s, each time (kombu scans only every 10th call by default): one cheap
            # ZRANGE, and a dead worker's lead is back at most V/6 s after it expired.
            "unacked_restore_interval": sweep_interval_s(visibility),
            "unacked_restore_throttle": 1,
            # A worker killed mid-sweep holds the sweep mutex: 10 s, not kombu's 300.
            "unacked_mutex_expire": SWEEP_MUTEX_S,
            "master_name": settings.redis_sentinel_master,  # used only with sentinel:// URLs
            # What the guarded channel needs, from this app rather than the environment.
            GUARD_OPTION: _guard_config(app, settings),
        },
        beat_schedule={
            "leadsync-refresh-token": {
                "task": REFRESH_TOKEN,
                "schedule": settings.refresh_interval_s,
                # A tick may wait behind leads for a free pool process; expiring it after one
                # short interval let a busy fleet skip every refresh (401s with 10 s tokens).
                "options": {"queue": CONTROL_QUEUE,
                            "expires": max(settings.refresh_interval_s, MIN_TICK_EXPIRY_S)},
            },
            "leadsync-resume-parked": {
                "task": RESUME_PARKED,
                "schedule": settings.resume_interval_s,
                "options": {"queue": CONTROL_QUEUE, "expires": settings.resume_interval_s},
            },
            "leadsync-reconcile": {
                "task": RECONCILE,
                "schedule": settings.reconcile_interval_s,
                "options": {"queue": CONTROL_QUEUE,
                            "expires": max(settings.reconcile_interval_s, MIN_TICK_EXPIRY_S)},
            },
            **_bulk_schedule(settings),
        },
    )
    app.steps["worker"].add(promoter_step(settings))  # due retries back on the queue, each 1 s
    # Live workers keep their held messages fresh in kombu's unacked index.
    app.steps["consumer"].add(UnackedHeartbeat)
    app.steps["consumer"].add(BatchedEvents)  # task events a few times a second, not per step
    return app


def _bulk_schedule(settings: Settings) -> dict[str, Any]:
    """The batcher/poller of worker/bulk/, scheduled only when bulk delivery can be on."""
    if settings.bulk == "off":
        return {}
    return {"leadsync-bulk-import": {
        "task": BULK_IMPORT,
        "schedule": settings.bulk_interval_s,
        "options": {"queue": CONTROL_QUEUE,
                    "expires": max(settings.bulk_interval_s, MIN_TICK_EXPIRY_S)},
    }}


def _guard_config(app: Celery, settings: Settings) -> GuardConfig:
    def task_names() -> frozenset[str]:
        # A plain kombu consumer of this app judges task names as a worker does.
        app.loader.import_default_modules()
        return frozenset(app.tasks)

    return GuardConfig(
        malformed_key=Keys(settings.key_prefix, settings.account).malformed,
        max_message_bytes=settings.max_message_bytes,
        task_queues=frozenset({LEADS_QUEUE, CONTROL_QUEUE}),
        task_names=task_names,
    )


def _app_from_environment() -> Celery:
    try:
        return make_app(Account.current().settings)  # the process's settings, read once
    except ConfigError as exc:
        # One clear line instead of an import traceback from inside `celery -A worker`.
        print(f"leadsync: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(3) from None


app = _app_from_environment()
