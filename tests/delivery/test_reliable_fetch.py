"""The fetch leaves no moment where a message is in neither the queue nor kombu's `unacked`."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import pytest
import redis
from kombu import Connection
from kombu.transport.redis import Transport as RedisTransport

from worker.lead import parse_lead
from worker.reliable_fetch import RELIABLE_POP, ReliableChannel
from worker.wire import encode_message

pytestmark = pytest.mark.redis
KEYS = ["unacked", "unacked_index", "leads"]


class ReliableTransport(RedisTransport):
    """The fetch alone, without the guard's checks on what a leadsync task looks like."""

    Channel = ReliableChannel


def test_a_popped_message_is_already_in_unacked_in_kombus_format(
    redis_client: redis.Redis, redis_url: str
) -> None:
    message = encode_message(parse_lead({"email": "ada@engines.example"}), task_id="t-1")
    redis_client.lpush("leads", message)
    queue, item = redis_client.eval(RELIABLE_POP, 3, *KEYS, time.time())  # type: ignore[misc]
    assert (queue, item) == (b"leads", message.encode())
    assert redis_client.llen("leads") == 0
    tag = json.loads(message)["properties"]["delivery_tag"]
    stored = json.loads(redis_client.hget("unacked", tag))  # type: ignore[arg-type]
    assert stored == [json.loads(message), "", "leads"]
    assert redis_client.zscore("unacked_index", tag) is not None

    # The consumer "dies" here. kombu's own sweep puts the message back once it is visible again.
    with Connection(redis_url, transport="worker.guard:GuardedTransport",
                    transport_options={"visibility_timeout": 0}) as conn:
        conn.default_channel.qos.restore_visible(interval=1)
    assert redis_client.hlen("unacked") == 0
    restored = json.loads(redis_client.rpop("leads"))  # type: ignore[arg-type]
    assert restored["body"] == json.loads(message)["body"]


@pytest.mark.parametrize("entry", [b"not json", b"[1, 2]", b'{"properties": {}}',
                                   b'{"body": "x", "headers": null, "properties": '
                                   b'{"delivery_tag": "t", "delivery_info": {}}}'])
def test_entries_that_are_not_envelopes_are_returned_unrecorded(
    redis_client: redis.Redis, entry: bytes
) -> None:
    redis_client.lpush("leads", entry)
    assert redis_client.eval(RELIABLE_POP, 3, *KEYS, time.time()) == [b"leads", entry]  # type: ignore[misc]
    assert redis_client.hlen("unacked") == 0  # the guard sets them aside; nothing to restore


def test_empty_queues_answer_nothing_and_the_order_is_kept(redis_client: redis.Redis) -> None:
    assert redis_client.eval(RELIABLE_POP, 4, "unacked", "unacked_index", "leads",  # type: ignore[misc]
                             "leadsync-control", time.time()) is None
    first = encode_message(parse_lead({"email": "a@b.example"}))
    second = encode_message(parse_lead({"email": "c@d.example"}))
    redis_client.lpush("leadsync-control", first, second)
    popped: Any = redis_client.eval(RELIABLE_POP, 4, "unacked", "unacked_index", "leads",
                                    "leadsync-control", time.time())
    assert popped == [b"leadsync-control", first.encode()]  # oldest first, from any queue


def _consume(redis_url: str, queues: list[str], received: list[str]) -> Any:
    """A kombu consumer on the guarded transport, the way the worker consumes."""
    from kombu import Consumer, Queue

    conn = Connection(redis_url, transport=ReliableTransport)
    consumer = Consumer(conn.default_channel, [Queue(name) for name in queues],
                        callbacks=[lambda body, message: (received.append(body), message.ack())],
                        accept=["json"])
    consumer.consume()
    return conn


def test_a_busy_queue_is_drained_without_waiting_on_an_empty_one(redis_url: str) -> None:
    # The worker consumes `leads` and the empty control queue. A blocking wait on the empty one
    # between messages would cap delivery at one lead per wait (seen: 1 lead/s).
    from kombu import Producer

    received: list[str] = []
    conn = _consume(redis_url, ["leads", "leadsync-control"], received)
    try:
        producer = Producer(conn.default_channel, routing_key="leads", serializer="json")
        for n in range(20):
            producer.publish(f"lead-{n}", routing_key="leads")
        for _ in range(20):
            conn.drain_events(timeout=0.5)  # a wait on the empty queue would time out here
        assert received == [f"lead-{n}" for n in range(20)]
    finally:
        conn.release()


def test_an_idle_consumer_wakes_for_a_message_on_either_queue(
    redis_url: str, redis_client: redis.Redis
) -> None:
    from kombu import Producer

    received: list[str] = []
    conn = _consume(redis_url, ["leads", "leadsync-control"], received)
    try:
        with pytest.raises(TimeoutError):
            conn.drain_events(timeout=0.3)  # both empty: the consumer now waits in Redis
        producer = Producer(conn.default_channel, serializer="json")
        producer.publish("control", routing_key="leadsync-control")
        producer.publish("lead", routing_key="leads")
        deadline = time.monotonic() + 10
        while len(received) < 2 and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                conn.drain_events(timeout=1)
        assert sorted(received) == ["control", "lead"]
        assert redis_client.hlen("unacked") == 0  # both acknowledged
    finally:
        conn.release()


@pytest.mark.parametrize(("version", "too_old"), [("6.0.16", True), ("5.0.7", True),
                                                  ("6.2.14", False), ("7.0.15", False),
                                                  ("255.255.255", False)])
def test_a_redis_without_blmove_is_named_at_start(version: str, too_old: bool) -> None:
    from worker.reliable_fetch import redis_version_problem

    problem = redis_version_problem(version)
    assert (problem is not None) == too_old
    if too_old:
        assert problem == f"leadsync needs Redis >= 6.2 (BLMOVE); this server is Redis {version}"
