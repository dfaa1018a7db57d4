"""Keep a worker alive whatever lands on the `leads` list, and keep what it could not read.

Producers in any language LPUSH raw bytes, so the worker must survive anything: stock Celery 5.7 /
kombu 5.7 stop the whole worker ("Unrecoverable error") on an entry that is not an envelope, a
body that is not `[args, kwargs, embed]`, a broken body encoding, or a 10,000-deep array (a
RecursionError), and the message, left in `unacked`, then kills the next worker. Three nets:

1. the channel judges every popped entry before kombu decodes it (worker/broker/message_check.py);
2. `GuardedRequest` turns any failure to unpack a task into an invalid task;
3. `LeadsyncTask.start_strategy` wraps Celery's whole consumer-side handling of a message.

Whatever a net catches goes to the malformed list with its reason (and leaves `unacked` in the
same MULTI): rejected, never lost. What this needs (the list's key, the size limit, the task
queues and names) comes from the app's `broker_transport_options[GUARD_OPTION]` (make_app sets
it), never from the environment: two apps in one process judge by their own settings.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from celery import Task
from celery.exceptions import InvalidTaskError
from celery.worker.request import Request
from kombu.transport.redis import SentinelChannel, SentinelTransport
from kombu.transport.redis import Transport as RedisTransport

from worker.base.keys import Keys
from worker.broker.fetch import ReliableChannel
from worker.broker.message_check import envelope_problem

__all__ = ["GUARD_OPTION", "GuardConfig", "envelope_problem", "record_malformed"]

log = logging.getLogger("leadsync.guard")

GUARD_OPTION = "leadsync_guard"  # the key in broker_transport_options
DEFAULT_MAX_MESSAGE_BYTES = 1_048_576
OVERSIZE_KEEP_BYTES = 65_536  # of an entry over the limit: its start and end (and its size)
_TAG = re.compile(rb'"delivery_tag"\s*:\s*("(?:[^"\\]|\\.){1,512}"|-?[0-9][0-9.eE+-]{0,30})')


def _no_tasks() -> frozenset[str]:
    return frozenset()


@dataclass(frozen=True)
class GuardConfig:
    """What the guard needs from the app, handed over in its transport options.

    `task_names` is called once per channel: the app's tasks are only all registered after the
    worker imported its task modules.
    """

    malformed_key: str = field(default_factory=lambda: Keys().malformed)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    task_queues: frozenset[str] = frozenset()
    task_names: Callable[[], Collection[str]] = _no_tasks


def guard_config(transport_options: dict[str, Any] | None) -> GuardConfig:
    config = (transport_options or {}).get(GUARD_OPTION)
    return config if isinstance(config, GuardConfig) else GuardConfig()


def record_malformed(redis: Any, keys_or_key: Keys | str, raw: bytes | str, reason: str, *,
                     keep_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                     unacked: tuple[str, str, list[str]] | None = None) -> None:
    """Append an unreadable entry (and why) to the malformed list, at most `keep_bytes` of it;
    with `unacked` = (hash, index, tags), also drop those tags from `unacked`, in one MULTI."""
    key = keys_or_key.malformed if isinstance(keys_or_key, Keys) else keys_or_key
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogateescape")
    if len(data) > keep_bytes:
        # The start (what it is) and the end (its headers, properties, last arguments).
        tail = keep_bytes // 4
        omitted = len(data) - keep_bytes
        data_kept = (data[:keep_bytes - tail] + f" ...[{omitted} bytes omitted]... ".encode()
                     + data[-tail:])
    else:
        data_kept = data
    text = data_kept.decode("utf-8", "replace")
    entry = {"reason": reason, "at": time.time(), "size_bytes": len(data), "raw": text}
    pipe = redis.pipeline(transaction=True)
    pipe.rpush(key, json.dumps(entry))
    if unacked is not None and unacked[2]:
        pipe.hdel(unacked[0], *unacked[2])
        pipe.zrem(unacked[1], *unacked[2])
    pipe.execute()


def recorded_tags(redis: Any, unacked_key: str, item: bytes) -> list[str]:
    """The `unacked` fields the pop recorded for this very entry (found by the text, since a
    broken entry may not decode; checked by the stored payload, so no other entry is touched)."""
    tags = []
    for token in _TAG.findall(item[:65536] + item[-65536:] if len(item) > 131072 else item):
        try:
            value = json.loads(token)
        except ValueError:
            continue
        if isinstance(value, str):
            tags.append(value)
        elif (isinstance(value, int | float) and not isinstance(value, bool)
              and abs(value) < 2**53 and value == int(value)):
            # As reliable_pop.lua spells a whole-number tag (string.format('%d')); it leaves
            # other numbers unrecorded, so there is nothing to find for them.
            tags.append(str(int(value)))
    found = []
    for tag in dict.fromkeys(tags):
        stored = redis.hget(unacked_key, tag)
        if stored is not None and stored.startswith(b"[" + item):
            found.append(tag)
    return found


class GuardedChannel(ReliableChannel):
    """Reliable Redis channel that moves an unreadable list entry aside instead of crashing."""

    _guard: GuardConfig | None = None
    _guard_tasks: frozenset[str] | None = None
    _guard_client: Any = None

    @property
    def guard(self) -> GuardConfig:
        if self._guard is None:
            client = self.connection.client
            self._guard = guard_config(client.transport_options if client else None)
        return self._guard

    def _known_tasks(self) -> frozenset[str]:
        if self._guard_tasks is None:
            self._guard_tasks = frozenset(self.guard.task_names())
        return self._guard_tasks

    def _accept(self, item: bytes, queue: str) -> bool:
        guard = self.guard
        # Task checks on task queues only: a ping's reply queue carries no task. (Outside the
        # net below: an app whose task modules fail to import must fail loudly, not turn every
        # lead into a malformed entry.)
        known = self._known_tasks() if queue in guard.task_queues else None
        try:
            problem = envelope_problem(item, known, max_bytes=guard.max_message_bytes)
        except Exception as exc:  # a bug in a check must not stop the worker
            problem = f"message check failed ({type(exc).__name__})"
        if problem is None:
            return True
        client = self._recording_client()
        # The pop may have recorded it as unacknowledged; kept aside now, it must not return.
        tags = recorded_tags(client, self.unacked_key, item)
        keep = guard.max_message_bytes if len(item) <= guard.max_message_bytes else min(
            guard.max_message_bytes, OVERSIZE_KEEP_BYTES)
        record_malformed(client, guard.malformed_key, item, problem, keep_bytes=keep,
                         unacked=(self.unacked_key, self.unacked_index_key, tags))
        log.error("rejected an unreadable message on %s: %s", queue, problem,
                  extra={"event": "malformed_message", "reason": problem})
        return False


    def _recording_client(self) -> Any:
        """A client on the channel's own pool, built once (a client per entry cost 0.3 ms)."""
        pool = self.pool
        if self._guard_client is None or self._guard_client.connection_pool is not pool:
            self._guard_client = self.Client(connection_pool=pool)
        return self._guard_client


class GuardedTransport(RedisTransport):
    """kombu's Redis transport with the guarded channel."""

    Channel = GuardedChannel


class GuardedSentinelChannel(GuardedChannel, SentinelChannel):
    """The guarded, reliable fetch on connections that Sentinel hands out (fail-over)."""


class GuardedSentinelTransport(SentinelTransport):
    """kombu's Sentinel transport (`sentinel://` URLs) with the guarded channel."""

    Channel = GuardedSentinelChannel


def keep_unreadable(message: Any, reason: str) -> None:
    """Record a message Celery could not handle in the malformed list of its own channel."""
    channel = message.channel
    guard = guard_config(channel.connection.client.transport_options)
    with channel.conn_or_acquire() as client:
        record_malformed(client, guard.malformed_key, _raw_of(message), reason,
                         keep_bytes=guard.max_message_bytes)
    log.error("rejected a task message Celery could not handle: %s", reason,
              extra={"event": "malformed_message", "reason": reason})


class GuardedRequest(Request):
    """A task body Celery cannot unpack becomes an invalid task (logged, rejected, recorded)."""

    def __init__(self, message: Any, *args: Any, **kwargs: Any) -> None:
        try:
            super().__init__(message, *args, **kwargs)
        except Exception as exc:  # whatever it is, the message is kept aside
            reason = f"task message cannot be unpacked ({type(exc).__name__})"
            keep_unreadable(message, reason)
            raise InvalidTaskError(reason) from None


def _raw_of(message: Any) -> str:
    body = message.body
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    try:
        return json.dumps({"headers": message.headers, "body": text}, default=str)
    except Exception:  # headers that cannot be shown: keep the body alone
        return json.dumps({"headers": "<unprintable>", "body": text})


class LeadsyncTask(Task):  # type: ignore[type-arg]  # generic only in celery-types stubs
    """Base class of every leadsync task: guarded unpacking and handling of the message."""

    Request = "worker.broker.guard:GuardedRequest"

    def start_strategy(self, app: Any, consumer: Any, **kwargs: Any) -> Any:
        handler = super().start_strategy(app, consumer, **kwargs)

        def guarded(message: Any, *args: Any, **kw: Any) -> Any:
            try:
                return handler(message, *args, **kw)
            except InvalidTaskError:
                raise  # already recorded (GuardedRequest); Celery rejects it
            except Exception as exc:  # what Celery would die or drop on
                if getattr(message, "acknowledged", False):
                    raise  # handed over already: not ours to reject
                reason = f"Celery could not handle the task message ({type(exc).__name__})"
                keep_unreadable(message, reason)
                raise InvalidTaskError(reason) from None

        return guarded
