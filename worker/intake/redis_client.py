"""The intake's asyncio Redis client, from the same LEADSYNC_REDIS_URL as everything else."""

from __future__ import annotations

from urllib.parse import urlparse

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel

from worker.base.settings import Settings


def async_redis(settings: Settings) -> aioredis.Redis:
    """Short timeouts: a Redis outage must become a quick 503, not a hung request."""
    url = settings.redis_url
    if url.startswith("sentinel://"):
        parts = [urlparse(part) for part in url.split(";") if part]
        hosts = [(p.hostname or "127.0.0.1", p.port or 26379) for p in parts]
        db = int(parts[0].path.strip("/") or 0)
        sentinel = Sentinel(hosts, socket_timeout=2)  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        client: aioredis.Redis = sentinel.master_for(
            settings.redis_sentinel_master, db=db, password=parts[0].password, socket_timeout=5)
        return client
    return aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5,
                                   health_check_interval=30)
