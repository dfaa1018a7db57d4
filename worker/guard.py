"""Keep a worker alive whatever lands on the `leads` list, and keep what it could not read.

Producers in any language LPUSH raw JSON, so the worker must survive anything. Stock Celery 5.7 /
kombu 5.7 stop the whole worker ("Unrecoverable error") on two kinds of garbage: a list entry that
is not a JSON message envelope (kombu decodes it outside any handler), and a task body that is JSON
but not `[args, kwargs, embed]` (Celery's Request unpacks it unguarded). Both are caught here and
the raw entry goes to the malformed dead-letter list with a reason: rejected, never lost.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import time
from collections.abc import Collection
from typing import Any

from celery import Task
from celery.exceptions import InvalidTaskError
from celery.worker.request import Request
from kombu.transport.redis import SentinelChannel, SentinelTransport
from kombu.transport.redis import Transport as RedisTransport

from worker.keys import Keys
from worker.reliable_fetch import ReliableChannel

log = logging.getLogger("leadsync.guard")

MALFORMED_MAX_BYTES = 1_000_000  # keep at most this much of one unreadable entry
ACCEPTED_CONTENT_TYPE = "application/json"  # the app accepts JSON only (worker/celery.py)


def envelope_problem(raw: bytes | str, known_tasks: Collection[str] | None = None) -> str | None:
    """Why this list entry cannot be delivered, or None if it can.

    Without `known_tasks` (a reply queue, say) only what kombu needs to build a message is
    checked. With them (a task queue), also what Celery would otherwise drop with a log line
    only (body not decodable or not JSON, no or unknown task name, a content type we do not
    accept) or die on (an unknown or broken `body_encoding`).
    """
    try:
        message = json.loads(raw)
    except ValueError:
        return "list entry is not JSON"
    if not isinstance(message, dict):
        return "list entry is not a JSON object"
    properties = message.get("properties")
    if not isinstance(properties, dict):
        return "message has no `properties` object"
    info = properties.get("delivery_info")
    if not isinstance(info, dict):
        return "message has no `properties.delivery_info` object"
    if not isinstance(info.get("exchange"), str) or not isinstance(info.get("routing_key"), str):
        return "`properties.delivery_info` needs `exchange` and `routing_key` strings"
    if "delivery_tag" not in properties:
        return "message has no `properties.delivery_tag`"
    headers = message.get("headers", {})
    if not isinstance(headers, dict):
        return "message `headers` is not an object"
    if "body" not in message:
        return "message has no `body`"
    if known_tasks is None:
        return None
    return _task_problem(message, properties, headers, known_tasks)


def _task_problem(message: dict[str, Any], properties: dict[str, Any], headers: dict[str, Any],
                  known_tasks: Collection[str]) -> str | None:
    task = headers.get("task")
    if not isinstance(task, str):
        return "message has no `headers.task` naming the task"
    if task not in known_tasks:
        return f"unknown task {task[:100]!r}"
    if message.get("content-type") != ACCEPTED_CONTENT_TYPE:
        return f"`content-type` must be {ACCEPTED_CONTENT_TYPE!r}"
    body = message["body"]
    if not isinstance(body, str):
        return "message `body` is not a string"
    encoding = properties.get("body_encoding")
    if encoding is not None:
        if encoding != "base64":
            return "`properties.body_encoding` must be 'base64' or absent"
        try:
            body = base64.b64decode(body, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return "message `body` is not valid base64 of UTF-8 text"
    try:
        json.loads(body)
    except ValueError:
        return "task body is not JSON"
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


class GuardedChannel(ReliableChannel):
    """Reliable Redis channel that moves an unreadable list entry aside instead of crashing."""

    def _accept(self, item: bytes, queue: str) -> bool:
        task_queues, task_names = _task_routing()
        # Task checks on task queues only: a ping's reply queue carries no task.
        problem = envelope_problem(item, task_names if queue in task_queues else None)
        if problem is None:
            return True
        redis = _broker_redis()
        record_malformed(redis, _keys_from_settings(), item, problem)
        # The pop may have recorded it as unacknowledged; kept aside now, it must not come back.
        tag = _delivery_tag(item)
        if tag is not None:
            redis.hdel(self.unacked_key, tag)
            redis.zrem(self.unacked_index_key, tag)
        log.error("rejected an unreadable message on the leads list: %s", problem,
                  extra={"event": "malformed_message", "reason": problem})
        return False


def _delivery_tag(item: bytes) -> str | None:
    try:
        tag = json.loads(item)["properties"]["delivery_tag"]
    except (ValueError, KeyError, TypeError):
        return None
    return str(tag) if isinstance(tag, str | int | float) else None


@functools.cache
def _task_routing() -> tuple[frozenset[str], frozenset[str]]:
    """The app's task queues and task names, with the task modules imported as a worker does
    (any process that consumes through this transport judges messages the same way)."""
    from worker.celery import app

    app.loader.import_default_modules()
    return frozenset(app.amqp.queues), frozenset(app.tasks)


class GuardedTransport(RedisTransport):
    """kombu's Redis transport with the guarded channel."""

    Channel = GuardedChannel


class GuardedSentinelChannel(GuardedChannel, SentinelChannel):
    """The guarded, reliable fetch on connections that Sentinel hands out (fail-over)."""


class GuardedSentinelTransport(SentinelTransport):
    """kombu's Sentinel transport (`sentinel://` URLs) with the guarded channel."""

    Channel = GuardedSentinelChannel


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
