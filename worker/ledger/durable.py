"""Write an outcome to Redis, waiting (bounded) for Redis to come back if it is away.

A message may only be acknowledged once its outcome is in Redis. When Redis is restarting or
unreachable the task waits up to `LEADSYNC_OUTCOME_WAIT_S` for it, then gives up with
`OutcomeNotRecordedError`; the task turns that into `Reject(requeue=True)`, which kombu
performs as one WATCH/MULTI (push back + drop from `unacked`) or, with Redis still away, not at
all: the message stays in `unacked`, where kombu's sweep restores it. Never acknowledged away.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import (
    MasterDownError,
    ReadOnlyError,
    TryAgainError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from worker.base.errors import RedisUnavailableError

log = logging.getLogger("leadsync.durable")

T = TypeVar("T")
# Redis away or not writable yet (BusyLoadingError is a ConnectionError: AOF still loading).
# A ResponseError from a script is a bug, not an outage: it is not waited for.
TRANSIENT = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, TryAgainError,
             MasterDownError)
FIRST_PAUSE_S = 0.1
LONGEST_PAUSE_S = 2.0


class OutcomeNotRecordedError(RedisUnavailableError):
    """Redis stayed away for the whole wait: the message must not be acknowledged."""


def write_durably(write: Callable[[], T], wait_s: float, *, what: str = "outcome",
                  sleep: Callable[[float], None] = time.sleep) -> T:
    """`write()`, retried while Redis is away, for at most `wait_s` seconds."""
    deadline = time.monotonic() + wait_s
    pause = FIRST_PAUSE_S
    warned = False
    while True:
        try:
            return write()
        except TRANSIENT as exc:
            if time.monotonic() + pause > deadline:
                raise OutcomeNotRecordedError(
                    f"could not record the {what}: Redis unavailable for {wait_s:g}s "
                    f"({type(exc).__name__})") from None
            if not warned:
                log.warning("Redis unavailable while recording the %s (%s); waiting up to "
                            "%gs", what, type(exc).__name__, wait_s)
                warned = True
            sleep(pause)
            pause = min(pause * 2, LONGEST_PAUSE_S)
