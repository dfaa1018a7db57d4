"""Redis clients built from settings, one pool per URL per process (Sentinel URLs too)."""

from __future__ import annotations

import threading
from urllib.parse import urlparse

import redis
from redis.sentinel import Sentinel

from worker.base.settings import Settings

_clients: dict[str, redis.Redis] = {}
_lock = threading.Lock()


def _from_url(url: str, sentinel_master: str) -> redis.Redis:
    if url.startswith("sentinel://"):
        # Celery's own form, so one setting serves the broker and leadsync:
        # sentinel://[:password@]host:26379/db;sentinel://host2:26379/db
        parts = [urlparse(part) for part in url.split(";") if part]
        hosts = [(p.hostname or "127.0.0.1", p.port or 26379) for p in parts]
        first = parts[0]
        db = int(first.path.strip("/") or 0)
        sentinel = Sentinel(hosts, socket_timeout=5)  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        master_client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]  # same
            sentinel_master, db=db, password=first.password, socket_timeout=5
        )
        return master_client
    return redis.Redis.from_url(
        url, socket_connect_timeout=5, socket_timeout=10, health_check_interval=30
    )


def get_redis(settings: Settings) -> redis.Redis:
    """The shared client for `settings.redis_url` (thread-safe, reused across calls)."""
    with _lock:
        client = _clients.get(settings.redis_url)
        if client is None:
            client = _clients[settings.redis_url] = _from_url(
                settings.redis_url, settings.redis_sentinel_master
            )
        return client
