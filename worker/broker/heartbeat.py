"""A live worker keeps its unacknowledged messages fresh; a dead one's go back within a minute.

kombu's Redis transport records every message a worker takes in `unacked` (the message) and
`unacked_index` (a sorted set scored with the time it was taken). Any worker's periodic sweep
pushes back the entries older than the visibility timeout; nothing knows who holds an entry.
That forced a choice between a long timeout (a killed worker's leads back an hour late) and a
short one (a live worker's slow task handed to a second worker while it runs).

This consumer bootstep removes the choice: every `heartbeat_interval_s(V)` the worker's main
process re-scores the index entries of the messages it still holds (`ZADD XX now tag`), so they
never look older than one interval while it lives. When it dies, its entries stop moving and the
next sweep after `V` gives them back. The timer runs in the main process's event loop, which stays
free while prefork pool children run tasks. Where the loop cannot beat, a thread does: under
`--pool=solo` (the task runs in the loop's own thread) and during a warm shutdown (SIGTERM: the
loop stops while the running tasks finish, and a sweep elsewhere would hand them out again).

Numbers at the default `LEADSYNC_VISIBILITY_TIMEOUT_S` = 30 s: heartbeat every 3 s (V / 10, so a
main loop may stall for 27 s before a live worker's message could be taken), sweep every 5 s
(V / 6): a dead worker's message is back on the queue 30-35 s after its last heartbeat.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import bootsteps
from celery.concurrency.solo import TaskPool as SoloPool

log = logging.getLogger("leadsync.heartbeat")

HEARTBEATS_PER_TIMEOUT = 10  # a live worker's entries are at most V/10 old between beats
SWEEPS_PER_TIMEOUT = 6  # a dead worker's entries are noticed at most V/6 after they expire
MIN_INTERVAL_S = 0.2  # tests use timeouts of a few seconds; no busier than this
SWEEP_MUTEX_S = 10  # a worker killed mid-sweep blocks the next sweeps this long (kombu: 300)


def heartbeat_interval_s(visibility_timeout_s: float) -> float:
    """How often a worker refreshes its held messages in kombu's unacked index."""
    return max(MIN_INTERVAL_S, visibility_timeout_s / HEARTBEATS_PER_TIMEOUT)


def sweep_interval_s(visibility_timeout_s: float) -> float:
    """How often each worker looks for messages whose holder stopped beating."""
    return max(MIN_INTERVAL_S, visibility_timeout_s / SWEEPS_PER_TIMEOUT)


def held_tags(qos: Any) -> list[str]:
    """Delivery tags this channel has taken and not yet acknowledged or rejected."""
    for _ in range(3):  # acks from pool threads may change the set while it is copied
        try:
            done = set(qos._dirty)
            return [tag for tag in list(qos._delivered) if tag not in done]
        except RuntimeError:
            continue
    return []


def refresh_unacked(channel: Any, now: float | None = None) -> int:
    """Re-score this channel's held messages in the unacked index; returns how many.

    ZADD XX only updates entries that exist: a message acknowledged meanwhile (its entry removed)
    is never written back.
    """
    tags = held_tags(channel.qos)
    if not tags:
        return 0
    stamp = time.time() if now is None else now
    with channel.conn_or_acquire() as client:
        updated: int = client.zadd(channel.unacked_index_key, dict.fromkeys(tags, stamp),
                                   xx=True, ch=True)
    return updated


class UnackedHeartbeat(bootsteps.StartStopStep):
    """Consumer bootstep: refresh the held messages' index entries on the worker's timer."""

    requires = ("celery.worker.consumer.tasks:Tasks",)
    label = "leadsync unacked heartbeat"

    def __init__(self, c: Any, **kwargs: Any) -> None:
        super().__init__(c, **kwargs)
        options = c.app.conf.broker_transport_options or {}
        self.interval_s = heartbeat_interval_s(float(options.get("visibility_timeout", 3600)))
        self.tref: Any = None
        self.keeper: threading.Thread | None = None
        self.keeper_done = threading.Event()
        self._failing = False

    def start(self, c: Any) -> None:
        self._stop_keeper()
        if isinstance(c.pool, SoloPool):  # tasks block the event loop: beat from a thread
            self._start_keeper(c)
            return
        self.tref = c.timer.call_repeatedly(self.interval_s, self.beat, (c,), priority=10)

    def stop(self, c: Any) -> None:
        """Warm shutdown (or a reconnect) begins: the event loop stops, the tasks may not."""
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
        self._start_keeper(c)

    def shutdown(self, c: Any) -> None:
        """The running tasks are done; the connection closes next (and restores the rest)."""
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
        self._stop_keeper()

    def _start_keeper(self, c: Any) -> None:
        consumer = getattr(c, "task_consumer", None)
        if consumer is not None and self.keeper is None:
            self.keeper_done.clear()
            self.keeper = threading.Thread(target=self._keep_beating, args=(consumer.channel,),
                                           name="leadsync-unacked-heartbeat", daemon=True)
            self.keeper.start()

    def _stop_keeper(self) -> None:
        if self.keeper is not None:
            self.keeper_done.set()
            self.keeper.join(5)
            self.keeper = None

    def _keep_beating(self, channel: Any) -> None:
        while not self.keeper_done.wait(self.interval_s):
            self._refresh(channel)

    def beat(self, c: Any) -> None:
        consumer = getattr(c, "task_consumer", None)
        if consumer is not None:
            self._refresh(consumer.channel)

    def _refresh(self, channel: Any) -> None:
        try:
            refresh_unacked(channel)
        except Exception as exc:  # a broker hiccup must not stop the beat; the next one retries
            if not self._failing:
                log.warning("could not refresh held messages in the unacked index: %s",
                            type(exc).__name__, extra={"event": "heartbeat_failed"})
            self._failing = True
        else:
            self._failing = False
