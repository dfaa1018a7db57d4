"""Batches onto a Redis list: one LPUSH per batch, written in one piece, its reply read late.

Producers push thousands of messages a second. redis-py writes a long command in 6 kB pieces,
a system call each (~150 for 1,000 messages), then waits idle while Redis stores the batch.
`BatchPusher` writes a batch whole and reads Redis's answer only when the next batch is encoded
(or at the end), so Redis stores one batch while Python builds the next. At most one batch is
ever unanswered, and a batch is counted only once Redis answered it: a count of pushed leads is
exact, as with one `client.lpush` per batch. Same pool, same retries as redis-py's own calls.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import redis


class BatchPusher:
    """LPUSH batches onto `key` over one pooled connection, one batch unanswered at most."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self._pool = client.connection_pool
        self._key = key
        self._connection: Any = None  # redis-py leaves Connection's methods untyped
        self._unanswered: list[bytes] | None = None  # the batch sent, as written
        self._replies = 1  # replies that batch gets (MULTI, one per LPUSH, EXEC)

    def send(self, values: list[str]) -> None:
        """Write one batch onto this pusher's list."""
        self.send_groups([(self._key, values)])

    def send_groups(self, groups: list[tuple[str, list[str]]]) -> None:
        """Write one batch: an LPUSH per (list, values), in one MULTI when there are several
        (a batch is pushed whole or not at all). Call `answer()` for the batch before first."""
        if self._unanswered is not None:
            raise RuntimeError("answer() the batch before sending another")
        if self._connection is None:
            self._connection = self._pool.get_connection()
        connection = self._connection
        commands = [("LPUSH", key, *values) for key, values in groups]
        if len(commands) > 1:
            commands = [("MULTI",), *commands, ("EXEC",)]
        packed = [b"".join(connection.pack_commands(commands))]
        connection.retry.call_with_retry(lambda: connection.send_packed_command(packed),
                                         lambda _: connection.disconnect())
        self._unanswered = packed
        self._replies = len(commands)

    def answer(self) -> int | None:
        """Redis's reply to the batch sent (the list's length), None if none is unanswered.

        A lost connection is retried as redis-py retries a command: reconnect, send the batch
        again, read. ResponseError (the key holds no list) is raised as it is.
        """
        packed, self._unanswered = self._unanswered, None
        if packed is None:
            return None
        connection = self._connection
        resend = iter((False,))  # the first attempt only reads: the batch is already sent

        def attempt() -> int:
            if next(resend, True):
                connection.send_packed_command(packed)
            replies = [connection.read_response() for _ in range(self._replies)]
            last = replies[-1]
            if isinstance(last, list):  # EXEC: one reply per LPUSH, errors as values
                errors = [reply for reply in last if isinstance(reply, Exception)]
                if errors:
                    raise errors[0]
                return int(last[-1])
            return int(last)

        try:
            return int(connection.retry.call_with_retry(attempt, lambda _: connection.disconnect()))
        except Exception:
            connection.disconnect()  # replies may be left unread: never reuse it as it is
            raise

    def close(self) -> None:
        """Give the connection back; one with a reply never read is closed first."""
        if self._connection is None:
            return
        if self._unanswered is not None:
            self._connection.disconnect()
            self._unanswered = None
        self._pool.release(self._connection)
        self._connection = None

    def __enter__(self) -> BatchPusher:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()
