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

from worker.broker.fetch import POP, ReliableChannel
from worker.leads.lead import parse_lead
from worker.leads.wire import encode_message

pytestmark = pytest.mark.redis
def pop(client: redis.Redis, *queues: str, record: str | None = None) -> Any:
    """One run of the pop script (by SHA, as the channel runs it) on `queues`."""
    flags = record if record is not None else "1" * len(queues)
    return POP.run(client, ["unacked", "unacked_index", *queues], [time.time(), flags])


class ReliableTransport(RedisTransport):
    """The fetch alone, without the guard's checks on what a leadsync task looks like."""

    Channel = ReliableChannel


def test_a_popped_message_is_already_in_unacked_in_kombus_format(
    redis_client: redis.Redis, redis_url: str
) -> None:
    message = encode_message(parse_lead({"email": "ada@engines.example", "consent": True}),
                             task_id="t-1")  # priority 0: the list `leads` itself
    redis_client.lpush("leads", message)
    assert pop(redis_client, "leads") == [b"leads", message.encode(), 1]
    assert redis_client.llen("leads") == 0
    tag = json.loads(message)["properties"]["delivery_tag"]
    stored = json.loads(redis_client.hget("unacked", tag))  # type: ignore[arg-type]
    assert stored == [json.loads(message), "", "leads"]
    assert redis_client.zscore("unacked_index", tag) is not None

    # The consumer "dies" here. kombu's own sweep puts the message back once it is visible again.
    with Connection(redis_url, transport="worker.broker.guard:GuardedTransport",
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
    assert pop(redis_client, "leads") == [b"leads", entry, 0]
    assert redis_client.hlen("unacked") == 0  # the guard sets them aside; nothing to restore


def test_empty_queues_answer_nothing_and_the_order_is_kept(redis_client: redis.Redis) -> None:
    assert pop(redis_client, "leads", "leadsync-control") is None
    first = encode_message(parse_lead({"email": "a@b.example"}))
    second = encode_message(parse_lead({"email": "c@d.example"}))
    redis_client.lpush("leadsync-control", first, second)
    popped = pop(redis_client, "leads", "leadsync-control")
    assert popped == [b"leadsync-control", first.encode(), 1]  # oldest first, from any queue


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
        # Both acknowledged: the deletions ride in the next poll (or go before an idle wait).
        with contextlib.suppress(TimeoutError):
            conn.drain_events(timeout=0.3)
        assert redis_client.hlen("unacked") == 0
    finally:
        conn.release()


@pytest.mark.parametrize(("version", "too_old"), [("6.0.16", True), ("5.0.7", True),
                                                  ("6.2.14", False), ("7.0.15", False),
                                                  ("255.255.255", False)])
def test_a_redis_without_blmove_is_named_at_start(version: str, too_old: bool) -> None:
    from worker.broker.fetch import redis_version_problem

    problem = redis_version_problem(version)
    assert (problem is not None) == too_old
    if too_old:
        assert problem == f"leadsync needs Redis >= 6.2 (BLMOVE); this server is Redis {version}"


def _envelope(tag: object) -> bytes:
    message = json.loads(encode_message(parse_lead({"email": "ada@engines.example"})))
    message["properties"]["delivery_tag"] = tag
    return json.dumps(message).encode()


@pytest.mark.parametrize(("tag", "field"), [("t-9", b"t-9"), (12345678901234, b"12345678901234")])
def test_string_and_integer_tags_are_recorded_as_kombu_spells_them(
    redis_client: redis.Redis, tag: object, field: bytes
) -> None:
    redis_client.lpush("leads", _envelope(tag))
    assert pop(redis_client, "leads")[2] == 1
    assert redis_client.hkeys("unacked") == [field]  # kombu's ack deletes HDEL unacked str(tag)


def test_a_tag_lua_cannot_spell_exactly_is_left_for_kombu_to_record(
    redis_client: redis.Redis,
) -> None:
    redis_client.lpush("leads", _envelope(0.30000000000000004))
    assert pop(redis_client, "leads")[2] == 0
    assert redis_client.hlen("unacked") == 0


def test_queues_flagged_no_ack_are_popped_but_not_recorded(redis_client: redis.Redis) -> None:
    reply, lead = _envelope("r-1"), _envelope("l-1")
    redis_client.lpush("reply", reply)
    redis_client.lpush("leads", lead)
    assert pop(redis_client, "reply", "leads", record="01")[1:] == [reply, 0]
    assert pop(redis_client, "reply", "leads", record="01")[1:] == [lead, 1]
    assert redis_client.hkeys("unacked") == [b"l-1"]


def test_an_ack_is_deleted_by_the_next_pop_not_by_a_round_trip_of_its_own(
    redis_url: str, redis_client: redis.Redis
) -> None:
    from kombu import Producer

    received: list[str] = []
    conn = _consume(redis_url, ["leads"], received)  # acks each message in its callback
    try:
        producer = Producer(conn.default_channel, routing_key="leads", serializer="json")
        for n in range(3):
            producer.publish(f"lead-{n}", routing_key="leads")
        conn.drain_events(timeout=5)
        assert received == ["lead-0"] and redis_client.hlen("unacked") == 1  # due, not sent
        conn.drain_events(timeout=5)  # the pop that takes lead-1 deletes lead-0's entry
        # lead-0's entry is gone, lead-1's waits (acked in memory; 0 would mean a round trip
        # of its own, 2 that the pop carried nothing).
        assert received == ["lead-0", "lead-1"] and redis_client.hlen("unacked") == 1
        conn.drain_events(timeout=5)
        with contextlib.suppress(TimeoutError):
            conn.drain_events(timeout=0.3)  # queue empty: due acks go before the idle wait
        assert redis_client.hlen("unacked") == 0 and redis_client.zcard("unacked_index") == 0
    finally:
        conn.release()


def test_an_acking_consumer_finds_its_message_in_unacked_written_once(
    redis_url: str, redis_client: redis.Redis
) -> None:
    from kombu import Consumer, Producer, Queue

    seen: list[Any] = []
    with Connection(redis_url, transport=ReliableTransport) as conn:
        def on_message(body: Any, message: Any) -> None:
            seen.append((body, redis_client.hget("unacked", message.delivery_tag)))
            message.ack()

        consumer = Consumer(conn.default_channel, [Queue("leads")], callbacks=[on_message],
                            accept=["json"])
        consumer.consume()
        Producer(conn.default_channel, serializer="json").publish("lead", routing_key="leads")
        hset_before = _calls(redis_client, "hset")
        conn.drain_events(timeout=5)
        hset_after = _calls(redis_client, "hset")
    assert len(seen) == 1 and seen[0][0] == "lead" and seen[0][1] is not None
    assert hset_after - hset_before == 1  # the pop's HSET only: kombu's second write is gone
    assert redis_client.hlen("unacked") == 0


def _calls(client: redis.Redis, command: str) -> int:
    stats: Any = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def test_a_no_ack_consumer_leaves_nothing_in_unacked(
    redis_url: str, redis_client: redis.Redis
) -> None:
    from kombu import Consumer, Producer, Queue

    received: list[str] = []
    with Connection(redis_url, transport=ReliableTransport) as conn:
        consumer = Consumer(conn.default_channel, [Queue("replies")], no_ack=True,
                            callbacks=[lambda body, message: received.append(body)],
                            accept=["json"])
        consumer.consume()
        Producer(conn.default_channel, serializer="json").publish("pong", routing_key="replies")
        conn.drain_events(timeout=5)
    assert received == ["pong"]
    assert redis_client.hlen("unacked") == 0  # nothing a later restore would put back


def test_a_ping_through_the_apps_transport_leaves_no_reply_in_unacked(
    redis_url: str, redis_client: redis.Redis, make_settings: Any
) -> None:
    # `leadsync status`/`health` and `celery inspect` read replies with a no_ack consumer: a
    # recorded reply would sit in `unacked` and be pushed back to a dead reply queue later.
    import threading

    from worker.celery import make_app

    app = make_app(make_settings(redis_url=redis_url))
    stop = threading.Event()
    listening = threading.Event()

    def answer_pings() -> None:
        with app.connection_for_read() as conn:
            node = app.control.mailbox(conn).Node(
                "contract@test", state=None, channel=conn.default_channel,
                handlers={"ping": lambda state, **kw: "pong"})
            node.listen()
            listening.set()
            while not stop.is_set():
                with contextlib.suppress(TimeoutError, OSError):
                    conn.drain_events(timeout=0.2)

    node_thread = threading.Thread(target=answer_pings, daemon=True)
    node_thread.start()
    try:
        assert listening.wait(10)
        replies: list[Any] = []
        deadline = time.monotonic() + 20
        while not replies and time.monotonic() < deadline:
            replies = app.control.ping(timeout=1) or []
        assert replies == [{"contract@test": "pong"}]
        assert redis_client.hlen("unacked") == 0
    finally:
        stop.set()
        node_thread.join(10)
        app.close()


def test_a_flushed_script_is_loaded_again_and_the_pop_still_records(
    redis_url: str, redis_client: redis.Redis
) -> None:
    from kombu import Consumer, Producer, Queue

    seen: list[Any] = []
    with Connection(redis_url, transport=ReliableTransport) as conn:
        def on_message(body: Any, message: Any) -> None:
            seen.append((body, redis_client.hexists("unacked", message.delivery_tag)))
            message.ack()

        consumer = Consumer(conn.default_channel, [Queue("leads")], callbacks=[on_message],
                            accept=["json"])
        consumer.consume()
        producer = Producer(conn.default_channel, serializer="json")
        producer.publish("first", routing_key="leads")
        conn.drain_events(timeout=5)
        redis_client.script_flush()  # as after a restart or a fail-over
        assert redis_client.script_exists(POP.sha) == [False]
        producer.publish("second", routing_key="leads")
        conn.drain_events(timeout=5)
    assert seen == [("first", True), ("second", True)]
    assert redis_client.script_exists(POP.sha) == [True]


def test_kombus_global_keyprefix_is_refused_with_one_line(
    redis_url: str, make_settings: Any
) -> None:
    from worker.broker.fetch import KEYPREFIX_REFUSED, BrokerContractError
    from worker.celery import make_app

    app = make_app(make_settings(redis_url=redis_url))
    app.conf.broker_transport_options = {**app.conf.broker_transport_options,
                                         "global_keyprefix": "tenant-a:"}
    with app.connection_for_read() as conn, pytest.raises(BrokerContractError) as refused:
        conn.default_channel  # noqa: B018  # building the channel is what refuses
    assert str(refused.value) == KEYPREFIX_REFUSED and "\n" not in KEYPREFIX_REFUSED
    app.close()
