"""Redis clients built from settings, one pool per URL per process (Sentinel URLs too)."""

from __future__ import annotations

import threading
from urllib.parse import urlparse

import redis
from redis.sentinel import Sentinel

from worker.settings import Settings

_clients: dict[str, redis.Redis] = {}
_lock = threading.Lock()


def _from_url(url: str) -> redis.Redis:
    parsed = urlparse(url)
    if parsed.scheme == "sentinel":
        # sentinel://host:26379[,host2:26379]/<master-name>/<db>
        hosts = [
            (part.split(":")[0], int(part.split(":")[1]) if ":" in part else 26379)
            for part in parsed.netloc.split("@")[-1].split(",")
        ]
        path = [p for p in parsed.path.split("/") if p]
        master = path[0] if path else "mymaster"
        db = int(path[1]) if len(path) > 1 else 0
        sentinel = Sentinel(hosts, socket_timeout=5)  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        master_client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]  # same
            master, db=db, password=parsed.password, socket_timeout=5
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
            client = _clients[settings.redis_url] = _from_url(settings.redis_url)
        return client
