"""What every Redis-backed part of leadsync is built from: the settings, the Redis client and
the account's key names, made once.

`worker.account.Account` is a `Scope` that also holds the parts built on it (token store,
ledger, limiter ...): lower layers take a `Scope` (and the parts they use, by argument), so
they never read the environment, build a client or derive key names themselves.
"""

from __future__ import annotations

from redis import Redis

from worker.base.keys import Keys
from worker.base.settings import Settings


class Scope:
    """Settings, Redis client and key names of one Constant Contact account."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.settings = settings
        self.redis = redis
        self.keys = Keys(settings.key_prefix, settings.account)
