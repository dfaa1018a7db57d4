"""Keep a worker alive whatever lands on the `leads` list, and keep what it could not read.

Producers in any language LPUSH raw JSON, so the worker must survive anything. Stock Celery 5.7 /
kombu 5.7 stop the whole worker ("Unrecoverable error") on two kinds of garbage: a list entry that
is not a JSON message envelope (kombu decodes it outside any handler), and a task body that is JSON
but not `[args, kwargs, embed]` (Celery's Request unpacks it unguarded). Both are caught here and
the raw entry goes to the malformed dead-letter list with a reason: rejected, never lost.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from celery import Task
from celery.exceptions import InvalidTaskError
from celery.worker.request import Request
from kombu.transport.redis import Channel as RedisChannel
from kombu.transport.redis import Transport as RedisTransport

from worker.keys import Keys

log = logging.getLogger("leadsync.guard")

MALFORMED_MAX_BYTES = 1_000_000  # keep at most this much of one unreadable entry


def envelope_problem(raw: bytes | str) -> str | None:
    """Why kombu could not turn this list entry into a message, or None if it can."""
    try:
        message = json.loads(raw)
    except ValueError:
        return "list entry is not JSON"
    if not isinstance(message, dict):
        return "list entry is not a JSON object"
    properties = message.get("properties")
    if not isinstance(properties, dict):
        return "message has no `properties` object"
    if not isinstance(properties.get("delivery_info"), dict):
        return "message has no `properties.delivery_info` object"
    if "delivery_tag" not in properties:
        return "message has no `properties.delivery_tag`"
    if not isinstance(message.get("headers", {}), dict):
        return "message `headers` is not an object"
    if "body" not in message:
        return "message has no `body`"
    return None


def record_malformed(redis: Any, keys: Keys, raw: bytes | str, reason: str) -> None:
    """Append an unreadable entry (and why) to the malformed dead-letter list."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    entry = {"reason": reason, "at": time.time(), "raw": text[:MALFORMED_MAX_BYTES]}
    redis.rpush(keys.malformed, json.dumps(entry))


def _keys_from_settings() -> Keys:
    from worker.settings import get_settings

    settings = get_settings()
    return Keys(settings.key_prefix, settings.account)


def _broker_redis() -> Any:
    """A plain client on the broker's Redis (workers get their settings from the environment)."""
    from worker.redis_conn import get_redis
    from worker.settings import get_settings

    return get_redis(get_settings())


class GuardedChannel(RedisChannel):
    """Redis channel that moves an unreadable list entry aside instead of crashing."""

    def _brpop_read(self, **options: Any) -> Any:
        client = self.client
        parse: Callable[..., Any] = client.parse_response

        def checked(connection: Any, command: str, **kwargs: Any) -> Any:
            reply = parse(connection, command, **kwargs)
            if reply:
                _queue, item = reply
                problem = envelope_problem(item)
                if problem is not None:
                    record_malformed(_broker_redis(), _keys_from_settings(), item, problem)
                    log.error("rejected an unreadable message on the leads list: %s", problem,
                              extra={"event": "malformed_message", "reason": problem})
                    return None  # the base class then reports Empty and polls again
            return reply

        client.parse_response = checked
        try:
            return super()._brpop_read(**options)  # type: ignore[misc]  # private in kombu stubs
        finally:
            del client.parse_response


class GuardedTransport(RedisTransport):
    """kombu's Redis transport with the guarded channel."""

    Channel = GuardedChannel


class GuardedRequest(Request):
    """A task body Celery cannot unpack becomes an invalid task (logged, rejected, recorded)."""

    def __init__(self, message: Any, *args: Any, **kwargs: Any) -> None:
        try:
            super().__init__(message, *args, **kwargs)
        except (KeyError, ValueError, TypeError) as exc:
            reason = f"task message cannot be unpacked ({type(exc).__name__})"
            try:
                record_malformed(_broker_redis(), _keys_from_settings(), _raw_of(message), reason)
            finally:
                raise InvalidTaskError(reason) from None


def _raw_of(message: Any) -> str:
    body = message.body
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    return json.dumps({"headers": message.headers, "body": text}, default=str)


class LeadsyncTask(Task):  # type: ignore[type-arg]  # generic only in celery-types stubs
    """Base class of every leadsync task: guarded unpacking of the message."""

    Request = "worker.guard:GuardedRequest"
