"""Fetch from Redis without a moment where a message is in neither the queue nor `unacked`.

kombu's Redis transport takes a message with BRPOP and only then writes it to its `unacked` hash.
A worker killed (kill -9, OOM, a lost machine) between the two loses the message for good: the
visibility timeout cannot bring back what `unacked` never held. Measured here: one lead of 1,000
lost across three SIGKILLs. This channel waits with `BLMOVE q q RIGHT RIGHT` (it blocks until the
list has an entry and moves the last entry onto itself: nothing leaves the list), then pops and
records in `unacked` in one Lua call (worker/lua/reliable_pop.lua, run by SHA). Needs Redis >= 6.2.

It overrides private methods of kombu's Redis channel, so kombu is pinned to the minor version it
is tested with (pyproject.toml), `kombu_contract_problem` refuses to start when those methods are
gone, and tests/delivery/test_fetch_contract.py fails when the pop script is not what ran.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from queue import Empty  # what kombu's poller expects when there is nothing to read
from typing import Any

from kombu.transport.redis import Channel as RedisChannel
from kombu.transport.redis import QoS as RedisQoS
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

from worker.broker.acks import DueAcks, delete_entries
from worker.broker.fetch_contract import BrokerContractError, check_channel_instance
from worker.broker.pop_order import PopOrder
from worker.lua import script

POP = script("reliable_pop")
MIN_REDIS = (6, 2)  # BLMOVE
_NOT_RECORDED = object()


class RedisTooOldError(BrokerContractError):
    """The broker's Redis lacks a command the fetch needs."""


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


KEYPREFIX_REFUSED = (
    "leadsync does not support kombu's `global_keyprefix` transport option (its producers, "
    "status and guard use unprefixed queue and unacked keys); give each deployment its own "
    "Redis database (the /N of LEADSYNC_REDIS_URL) instead")


class ReliableQoS(RedisQoS):
    """kombu's QoS, minus the second `unacked` write for a message the pop already recorded,
    and minus the round trip of each acknowledgement."""

    def append(self, message: Any, delivery_tag: Any) -> None:
        if getattr(self.channel, "_pop_recorded_tag", _NOT_RECORDED) == delivery_tag:
            # The Lua pop wrote this entry atomically with the pop: keep it in memory only.
            super(RedisQoS, self).append(message, delivery_tag)
        else:
            super().append(message, delivery_tag)

    def ack(self, delivery_tag: Any) -> None:
        """Acknowledged: the `unacked` entry is deleted by the channel's next pop, in the same
        round trip (see ReliableChannel)."""
        self.channel.ack_later(delivery_tag)  # type: ignore[attr-defined]  # a ReliableChannel
        super(RedisQoS, self).ack(delivery_tag)


class ReliableChannel(RedisChannel):
    """Redis channel whose fetch and `unacked` bookkeeping happen in one atomic step.

    Polling alternates between two commands sent on kombu's polling connection: the Lua pop
    (answers at once) while messages keep coming, and, once every queue was found empty, a
    blocking `BLMOVE` on one queue so an idle worker waits in Redis instead of spinning. BLMOVE
    watches one key only: with several queues consumed, a message on another is noticed when
    the wait ends (`brpop_timeout` divided by the number of queues). While leads flow, the
    control queue's lists are read first only every CONTROL_EVERY_S (worker/broker/pop_order.py),
    and otherwise last, in the same pop.

    Acknowledgements ride in the next pop: kombu's ack was a blocking round trip in the main
    process, which also fetches every message. Celery acks after the task returned, once the
    lead's outcome is in Redis: a deferred ack can only make a message come back (the worker
    dying before its next poll), and the ledger answers that copy as a duplicate. Before an idle
    wait and when the channel closes, due acks are sent at once (docs/notes/delivery.md).
    """

    QoS = ReliableQoS
    _reliable_keys: list[str]
    _record_flags: str = ""
    _reliable_sent: str = "EVALSHA"
    _reliable_idle: bool = False
    _version_checked: bool = False
    _pop_recorded_tag: Any = _NOT_RECORDED
    _last_connparams: dict[str, Any] | None = None
    # kombu's own members, absent from its type stubs:
    _queue_cycle: Any
    _q_for_pri: Callable[[str, int], str]
    connection_errors: tuple[type[BaseException], ...]

    def __init__(self, connection: Any, **kwargs: Any) -> None:
        if connection.client.transport_options.get("global_keyprefix"):
            raise BrokerContractError(KEYPREFIX_REFUSED)
        self._no_ack_by_queue: dict[str, bool] = {}
        self._acks = DueAcks()  # acknowledged, entry not deleted yet
        super().__init__(connection, **kwargs)
        self._pop_order = PopOrder(self._q_for_pri, self.priority_steps)
        check_channel_instance(self)

    def close(self) -> None:
        """Close even when Redis is gone: a failed read of the pending poll must not skip the
        restore (see `_connparams`). The lost reply is safe: what the pop took is in `unacked`.
        Due acks are sent first (Redis away: those messages come back, as duplicates)."""
        if self._in_poll:
            try:
                self._brpop_read()
            except Empty:
                pass
            except self.connection_errors:
                pass
        with contextlib.suppress(*self.connection_errors):
            self.send_acks()
        super().close()

    def ack_later(self, delivery_tag: Any) -> None:
        """Delete the tag's `unacked` entry with the next pop; at once when no pop is sure to
        come (the channel closed or closing, consuming nothing, or its transport let go after a
        lost connection: a task finishing late still acks on its old channel, or fails as a
        connection error, as kombu's ack did)."""
        transport = self.connection
        if (self.closed or getattr(self, "_closing", False) or not self.active_queues
                or transport is None or transport.client is None):
            # Now, with any still due. If this fails the tag stays held, as with kombu's ack:
            # the channel's close restores it.
            with self.conn_or_acquire() as client:
                delete_entries(client, self.unacked_key, self.unacked_index_key, [delivery_tag])
            with contextlib.suppress(*self.connection_errors):  # this ack is done either way
                self.send_acks()
            return
        self._acks.add(delivery_tag)

    def send_acks(self) -> None:
        """Delete the due acks' entries now (kept due if Redis fails)."""
        while self._acks:
            tags = self._acks.take()
            try:
                with self.conn_or_acquire() as client:
                    delete_entries(client, self.unacked_key, self.unacked_index_key, tags)
            except BaseException:
                self._acks.put_back(tags)
                raise

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        """kombu's connection parameters, remembered for a channel whose transport let go.

        On a lost connection Celery closes it twice (`collect()`, then `close()`); the first
        drops the transport's client, so a channel whose close did not finish the first time
        restored its held messages (or a late task acked) with no way to build a Redis client:
        an AttributeError that killed the worker. Now it reaches Redis as before, and while
        Redis is away it fails as a connection error, which every caller expects: the held
        messages stay in `unacked` for the sweep.
        """
        transport = self.connection
        if transport is None or transport.client is None:
            if self._last_connparams is None or asynchronous:
                raise RedisConnectionError("the broker connection is closed")
            return dict(self._last_connparams)
        params: dict[str, Any] = super()._connparams(  # type: ignore[misc]  # not in stubs
            asynchronous=asynchronous)
        if not asynchronous:
            self._last_connparams = dict(params)
        return params

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        # kombu keeps one callback per queue, the last consumer's: so does this flag. A no_ack
        # consumer (a ping's reply queue) never acks, so its messages must not enter `unacked`.
        self._no_ack_by_queue[queue] = bool(no_ack)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

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
        record = self.ack_emulation
        self._reliable_keys, self._record_flags = self._pop_order.next(
            queues, [record and not self._no_ack_by_queue.get(queue, False) for queue in queues],
            after_empty=self._reliable_idle)
        connection = self._in_poll = self.client.connection
        if not self._reliable_idle:
            self._reliable_sent = "EVALSHA"
            connection.send_command(*self._pop_command())
            return
        # Everything was empty: wait in Redis. BLMOVE q q moves the last entry onto itself, so
        # nothing leaves the list; it watches the first queue of kombu's cycle (whatever order
        # the pop uses), which a delivery rotates. Acks due now would wait behind it: they go
        # first (an idle worker has the time).
        self.send_acks()
        wait_on = self._q_for_pri(queues[0], self.priority_steps[0])
        wait_s = max(0.1, (timeout or 1) / len(queues))
        self._reliable_sent = "BLMOVE"
        connection.send_command("BLMOVE", wait_on, wait_on, "RIGHT", "RIGHT", f"{wait_s:.2f}")

    def _pop_command(self) -> list[Any]:
        keys = [self.unacked_key, self.unacked_index_key, *self._reliable_keys]
        return POP.evalsha_command(keys, [repr(time.time()), self._record_flags,
                                          *self._acks.for_pop()])

    def _read_pop(self, **options: Any) -> tuple[str, bytes, bool] | None:
        connection = self.client.connection
        try:
            reply = self.client.parse_response(connection, "EVALSHA", **options)
        except NoScriptError:
            # Redis forgot the script (restart, SCRIPT FLUSH, fail-over): load it, pop again.
            POP.load_on(connection)
            connection.send_command(*self._pop_command())
            reply = self.client.parse_response(connection, "EVALSHA", **options)
        self._acks.pop_ran()  # the pop ran: so did the deletions it carried
        if not reply:
            return None
        queue, item, recorded = reply
        return bytes_to_str(queue), item, bool(recorded)

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
                # As kombu does: drop the connection so the next poll reconnects. The acks the
                # pop carried may not have run: they go with the next one (deleting is
                # idempotent).
                self._acks.pop_lost()
                self.client.connection.disconnect()
                raise
            self._reliable_idle = popped is None
            if popped is None:
                raise Empty()
            queue, item, recorded = popped
            dest = queue.rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            payload = self._accept(item, dest)
            if payload is None:
                raise Empty()
            if recorded:
                self._pop_recorded_tag = payload["properties"]["delivery_tag"]
            try:
                self.connection._deliver(payload, dest)
            finally:
                self._pop_recorded_tag = _NOT_RECORDED
            return True
        finally:
            self._in_poll = None
            flush = getattr(self, "_flush_brpop_reauth", None)
            if flush is not None:
                flush()

    def _accept(self, item: bytes, queue: str) -> dict[str, Any] | None:
        """The decoded message to deliver, or None to refuse the entry (a subclass that checks
        entries decodes each once, here)."""
        payload: dict[str, Any] = loads(bytes_to_str(item))
        return payload
