"""What a worker checks once it is up: is the broker's Redis fit to hold leads and tokens?

Connected from worker/celery.py. Uses the app's own broker connection (the Redis the worker
consumes from) and the app's `leadsync_allow_volatile_redis` setting, so an app built with
`make_app(settings)` is judged by its settings, not the environment's.
"""

from __future__ import annotations

from typing import Any

from celery.signals import worker_ready

from worker.base.redis_check import log_redis_fitness

ALLOW_VOLATILE_CONF = "leadsync_allow_volatile_redis"  # set by make_app from the settings


@worker_ready.connect
def check_broker_redis(sender: Any = None, **_: Any) -> None:
    """An ERROR line per problem (no AOF/RDB, eviction), a WARNING if CONFIG is disabled."""
    app = getattr(sender, "app", None)
    if app is None:
        return
    allow = bool(app.conf.get(ALLOW_VOLATILE_CONF, False))
    with app.connection_for_write() as conn:
        log_redis_fitness(conn.default_channel.client, allow_volatile=allow)
