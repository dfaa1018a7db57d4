"""Which queue lists the fetch's next pop reads, in what order (worker/broker/fetch.py).

A worker consumes `leads` and the control queue (`leadsync-control`: token refreshes, beat's
ticks). Reading the control lists first on every pop cost each lead an `RPOP leadsync-control`
that found nothing. Now the control lists come first only when a look at them is due: at most
CONTROL_EVERY_S after the last one, and on the pop after one that found every queue empty. In
between they come after the other queues' lists, so they are still read whenever those are
empty, in the same call: a control message waits behind leads at most CONTROL_EVERY_S longer
(plus the pop in progress), never until the leads run out, and one costs no extra round trip.

Within each group the order is kombu's: priority step first, then the channel's queue cycle.
Each list keeps the record flag of its queue ('1': the pop writes the message to `unacked`;
'0' for a no_ack consumer), so the flags follow the keys whatever the order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from worker.base.names import CONTROL_QUEUE

CONTROL_EVERY_S = 0.25  # the longest a control message waits behind flowing leads, beyond a pop
Order = tuple[list[str], str]  # the lists to try, one record flag per list


class PopOrder:
    """Chooses each pop's lists; `occasional` queues are looked at first only when due."""

    def __init__(self, list_for: Callable[[str, int], str], steps: Sequence[int], *,
                 occasional: Sequence[str] = (CONTROL_QUEUE,),
                 every_s: float = CONTROL_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._list_for = list_for
        self._steps = tuple(steps)
        self._occasional = frozenset(occasional)
        self.every_s = every_s
        self._clock = clock
        self._looked_at: float | None = None  # when the occasional lists last came first
        self._built_for: tuple[tuple[str, ...], tuple[bool, ...]] | None = None
        self._orders: tuple[Order, Order] = (([], ""), ([], ""))

    def orders(self, queues: Sequence[str], record: Sequence[bool]) -> tuple[Order, Order]:
        """(occasional queues first, occasional queues last) for `queues` in cycle order, each
        recorded in `unacked` or not as `record` says; the same object when nothing differs."""
        built_for = (tuple(queues), tuple(record))
        if built_for != self._built_for:
            first = [q for q in queues if q in self._occasional]
            rest = [q for q in queues if q not in self._occasional]
            flag = {q: "1" if r else "0" for q, r in zip(queues, record, strict=True)}
            due = self._order([first + rest], flag)
            later = self._order([rest, first], flag) if first and rest else due
            self._orders = (due, later)
            self._built_for = built_for
        return self._orders

    def _order(self, groups: list[list[str]], flag: dict[str, str]) -> Order:
        pairs = [(self._list_for(q, pri), q) for group in groups for pri in self._steps
                 for q in group]
        return [key for key, _ in pairs], "".join(flag[q] for _, q in pairs)

    def next(self, queues: Sequence[str], record: Sequence[bool], *, after_empty: bool) -> Order:
        """The lists and flags of the pop about to be sent. `after_empty`: the last pop found
        every queue empty (this one follows an idle wait)."""
        due, later = self.orders(queues, record)
        if due is later:  # no occasional queue, or nothing else consumed
            return due
        now = self._clock()
        if after_empty or self._looked_at is None or now - self._looked_at >= self.every_s:
            self._looked_at = now
            return due
        return later
