"""Which of the queue's priority lists a lead goes on: consented leads first, backlogs behind.

kombu's Redis transport keeps one list per priority step of a queue (`leads`, `leads\\x06\\x163`,
`...6`, `...9`: kombu/transport/redis.py `_q_for_pri`) and the fetch pops them in that order,
priority 0 first (worker/broker/fetch.py). A lead with consent is published at priority 0, one
without at BACKLOG_PRIORITY: a person who just ticked the box is never queued behind a 20,000-lead
export, which drains by import meanwhile. Everything that puts a lead message back (the ledger's
Lua steps, the promoter, kombu's own restore of `unacked`) keeps the message's priority; a
producer that pushes onto `leads` itself is read on priority 0, first in, first out.
"""

from __future__ import annotations

from redis import Redis

CONSENTED_PRIORITY = 0
BACKLOG_PRIORITY = 9  # the last list kombu pops
# The bulk stager (worker/bulk/backlog.py) takes the backlog's list in hundreds; what it will not
# stage it hands on to this list, which only workers read, ahead of the backlog.
HANDED_ON_PRIORITY = 6
# kombu.transport.redis: PRIORITY_STEPS and Channel.sep (worker/broker/fetch_contract.py checks
# both).
PRIORITY_STEPS = (0, 3, 6, 9)
SEP = "\x06\x16"


def priority_for(consent: bool) -> int:
    """The message priority of a lead with or without consent."""
    return CONSENTED_PRIORITY if consent else BACKLOG_PRIORITY


def list_for(queue: str, priority: int) -> str:
    """The Redis list kombu puts a message of `priority` (0-9) on, as its `_q_for_pri` names it."""
    step = max(s for s in PRIORITY_STEPS if s <= min(max(priority, 0), 9))
    return f"{queue}{SEP}{step}" if step else queue


def queue_lists(queue: str) -> tuple[str, ...]:
    """Every list of `queue`, in the order the fetch pops them (the Lua scripts' KEYS blocks)."""
    return tuple(list_for(queue, step) for step in PRIORITY_STEPS)


def queued(redis: Redis, queue: str) -> int:
    """Messages waiting on `queue`, every priority list counted (one round trip)."""
    pipe = redis.pipeline(transaction=False)
    for name in queue_lists(queue):
        pipe.llen(name)
    return sum(int(n) for n in pipe.execute())
