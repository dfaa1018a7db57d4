"""Task events (what Flower shows) sent a few times a second, not after every task step.

Celery buffers a worker's task events (received, started, succeeded) and flushes the buffer on
the event loop's next tick, which at full speed is one PUBLISH per tick: 1.7 to 2 per lead
measured, a round trip each from the worker's main process, the one that also fetches and
acknowledges every message. This consumer bootstep makes the flush periodic (at most every
FLUSH_EVERY_S, or when BUFFER_LIMIT events wait), so the cost follows time, not leads. Flower
sees a task's events up to FLUSH_EVERY_S later; a stopping worker flushes what waits.
"""

from __future__ import annotations

import contextlib
from typing import Any

from celery import bootsteps

FLUSH_EVERY_S = 0.5
BUFFER_LIMIT = 1000  # Celery's default is 24 (a flush every 8 leads at three events each)


class BatchedEvents(bootsteps.StartStopStep):
    """Consumer bootstep: flush the task event buffer on a timer instead of every tick."""

    requires = ("celery.worker.consumer.events:Events",)
    label = "leadsync batched task events"

    def __init__(self, c: Any, **kwargs: Any) -> None:
        super().__init__(c, **kwargs)
        self.pending = False

    def start(self, c: Any) -> None:
        dispatcher = c.event_dispatcher
        if dispatcher is None or c.hub is None or dispatcher.on_send_buffered is None:
            return  # no event loop: Celery does not buffer, nothing to batch
        dispatcher.buffer_limit = BUFFER_LIMIT
        self.pending = False

        def flush() -> None:
            self.pending = False
            if c.event_dispatcher is dispatcher:  # not replaced by a reconnect meanwhile
                dispatcher.flush()

        def flush_soon() -> None:
            if not self.pending:
                self.pending = True
                c.hub.call_later(FLUSH_EVERY_S, flush)

        dispatcher.on_send_buffered = flush_soon

    def stop(self, c: Any) -> None:
        dispatcher = c.event_dispatcher
        if dispatcher is not None:
            # The broker may be gone; events are monitoring, not leads.
            with contextlib.suppress(Exception):
                dispatcher.flush()
