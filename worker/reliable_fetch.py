"""Fetch from Redis without a moment where a message is in neither the queue nor `unacked`.

kombu's Redis transport takes a message with BRPOP and only then writes it to its `unacked` hash.
A worker killed (kill -9, OOM, a lost machine) between the two loses the message for good: the
visibility timeout cannot bring back what `unacked` never held. Measured here: one lead of 1,000
lost across three SIGKILLs. This channel waits with `BLMOVE q q RIGHT RIGHT` (it blocks until the
list has an entry and moves the last entry onto itself: nothing leaves the list), then pops and
records in `unacked` in one Lua call (worker/lua/reliable_pop.lua). Needs Redis >= 6.2.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib import resources
from queue import Empty  # what kombu's poller expects when there is nothing to read
from typing import Any

from kombu.transport.redis import Channel as RedisChannel
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

RELIABLE_POP = resources.files("worker").joinpath("lua/reliable_pop.lua").read_text()
MIN_REDIS = (6, 2)  # BLMOVE


def redis_version_problem(version: str) -> str | None:
    """A clear sentence when this Redis is too old for the reliable fetch, else None."""
    try:
        found = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return None  # an unusual version string: let the first BLMOVE answer for itself
    if found >= MIN_REDIS:
        return None
    wanted = ".".join(map(str, MIN_REDIS))
    return f"leadsync needs Redis >= {wanted} (BLMOVE); this server is Redis {version}"


class RedisTooOldError(RuntimeError):
    """The broker's Redis lacks a command the fetch needs."""


class ReliableChannel(RedisChannel):
    """Redis channel whose fetch and `unacked` bookkeeping happen in one atomic step.

    Polling alternates between two commands sent on kombu's polling connection: the Lua pop
    (answers at once) while messages keep coming, and, once every queue was found empty, a
    blocking `BLMOVE` on one queue so an idle worker waits in Redis instead of spinning. BLMOVE
    watches one key only, so when several queues are consumed its wait is split between them
    (an idle worker notices a new message within about `brpop_timeout` seconds at worst).
    """

    _reliable_keys: list[str]
    _reliable_sent: str = "EVAL"
    _reliable_idle: bool = False
    _version_checked: bool = False
    # kombu's own members, absent from its type stubs:
    _queue_cycle: Any
    _q_for_pri: Callable[[str, int], str]
    connection_errors: tuple[type[BaseException], ...]

    def _brpop_start(self, timeout: float | None = None) -> None:
        if timeout is None:
            timeout = self.brpop_timeout
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        if not self._version_checked:
            problem = redis_version_problem(str(self.client.info("server")["redis_version"]))
            if problem is not None:
                raise RedisTooOldError(problem)  # the worker stops with this one line
            self._version_checked = True
        self._reliable_keys = [self._q_for_pri(queue, pri) for pri in self.priority_steps
                               for queue in queues]
        connection = self._in_poll = self.client.connection
        self._brpop_sent_at = time.monotonic()
        if not self._reliable_idle:
            self._reliable_sent = "EVAL"
            connection.send_command(*self._pop_command())
            return
        # Everything was empty: wait in Redis. BLMOVE q q moves the last entry onto itself, so
        # nothing leaves the list; the cycle rotates which queue this wait watches.
        wait_on = self._reliable_keys[0]
        wait_s = max(0.1, (timeout or 1) / len(queues))
        self._reliable_sent = "BLMOVE"
        connection.send_command("BLMOVE", wait_on, wait_on, "RIGHT", "RIGHT", f"{wait_s:.2f}")

    def _pop_command(self) -> list[Any]:
        keys = [self.unacked_key, self.unacked_index_key, *self._reliable_keys]
        return ["EVAL", RELIABLE_POP, len(keys), *keys, repr(time.time())]

    def _read_pop(self, **options: Any) -> tuple[str, bytes] | None:
        reply = self.client.parse_response(self.client.connection, "EVAL", **options)
        if not reply:
            return None
        queue, item = reply
        return bytes_to_str(queue), item

    def _brpop_read(self, **options: Any) -> bool:
        try:
            try:
                if self._reliable_sent == "BLMOVE":
                    self.client.parse_response(self.client.connection, "BLMOVE", **options)
                    # The wait is over (an entry arrived or it timed out): pop now, on the
                    # connection that just became idle.
                    self.client.connection.send_command(*self._pop_command())
                popped = self._read_pop(**options)
            except self.connection_errors:
                # As kombu does: drop the connection so the next poll reconnects.
                self.client.connection.disconnect()
                raise
            self._reliable_idle = popped is None
            if popped is None:
                raise Empty()
            queue, item = popped
            dest = queue.rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            if not self._accept(item, dest):
                raise Empty()
            self.connection._deliver(loads(bytes_to_str(item)), dest)
            return True
        finally:
            self._in_poll = None
            flush = getattr(self, "_flush_brpop_reauth", None)
            if flush is not None:
                flush()

    def _accept(self, item: bytes, queue: str) -> bool:
        """Hook for a subclass to refuse an entry (it is then not delivered)."""
        return True
