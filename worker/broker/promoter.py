"""A worker bootstep that promotes due retries every second (worker/ledger/schedule.py).

Runs in each worker's main process on Celery's own timer (the event loop's timer with the
prefork pool, a timer thread otherwise), so due retries are back on the queue within about a
second wherever any worker runs, without a beat message per second. Its Redis client has short
timeouts: while Redis is away a tick fails fast and the next one tries again.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import bootsteps

from worker.base.redis_conn import get_redis
from worker.base.scope import Scope
from worker.base.settings import Settings
from worker.ledger.schedule import Schedule

log = logging.getLogger("leadsync.promoter")

PROMOTE_EVERY_S = 1.0


def _client(settings: Settings) -> redis.Redis:
    if settings.redis_url.startswith(("redis://", "rediss://")):
        return redis.Redis.from_url(settings.redis_url, socket_connect_timeout=1,
                                    socket_timeout=2)
    return get_redis(settings)  # sentinel: the shared client finds the current master


def promoter_step(settings: Settings) -> type[bootsteps.StartStopStep]:
    """The bootstep class for an app built from `settings` (registered by worker.celery)."""

    class Promoter(bootsteps.StartStopStep):
        requires = ("celery.worker.components:Timer",)
        label = "leadsync promoter"

        def __init__(self, parent: Any, **kwargs: Any) -> None:
            super().__init__(parent, **kwargs)
            self.tref: Any = None
            self.schedule: Schedule | None = None
            self.failing = False

        def start(self, parent: Any) -> None:
            self.tref = parent.timer.call_repeatedly(PROMOTE_EVERY_S, self.tick)

        def stop(self, parent: Any) -> None:
            if self.tref is not None:
                self.tref.cancel()
                self.tref = None

        def tick(self) -> None:
            try:
                if self.schedule is None:
                    self.schedule = Schedule(Scope(settings, _client(settings)))
                moved = self.schedule.promote()
            except Exception as exc:  # Redis away: the next tick tries again
                if not self.failing:
                    log.warning("promoter: could not promote due retries (%s)",
                                type(exc).__name__)
                self.failing = True
                return
            self.failing = False
            if moved:
                log.debug("promoter: %d due leads back on the queue", moved)

    return Promoter
