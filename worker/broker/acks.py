"""Acknowledgements waiting to ride in the channel's next pop (worker/broker/fetch.py).

A tag acknowledged in memory waits here until a pop carries its `unacked` deletion; a pop that
did not run (a connection error) gives its tags back for the next one, since deleting twice is
harmless. Appends come from whichever thread acks (pool threads with `--pool=threads`).
"""

from __future__ import annotations

import contextlib
from collections import deque
from typing import Any

MAX_ACKS_PER_POP = 500  # keeps one pop short (and within Lua's argument limits)


class DueAcks:
    def __init__(self) -> None:
        self._due: deque[Any] = deque()
        self.in_pop: list[Any] = []  # carried by the pop on its way (sent again if it fails)

    def __bool__(self) -> bool:
        return bool(self._due)

    def add(self, tag: Any) -> None:
        self._due.append(tag)

    def take(self) -> list[Any]:
        taken: list[Any] = []
        with contextlib.suppress(IndexError):  # emptied by another thread meanwhile
            while len(taken) < MAX_ACKS_PER_POP:
                taken.append(self._due.popleft())
        return taken

    def put_back(self, tags: list[Any]) -> None:
        self._due.extendleft(reversed(tags))

    def for_pop(self) -> list[Any]:
        """The tags the next pop carries (the same again when that pop is sent again)."""
        if not self.in_pop:
            self.in_pop = self.take()
        return self.in_pop

    def pop_ran(self) -> None:
        self.in_pop = []

    def pop_lost(self) -> None:
        self.put_back(self.in_pop)
        self.in_pop = []


def delete_entries(client: Any, unacked_key: str, index_key: str, tags: list[Any]) -> None:
    """One round trip; HDEL before ZREM: a crash between leaves an index entry pointing at
    nothing, which kombu's sweep drops (restore_by_tag removes an entry whose message is gone)."""
    pipe = client.pipeline(transaction=False)
    pipe.hdel(unacked_key, *tags)
    pipe.zrem(index_key, *tags)
    pipe.execute()
