"""A worker survives Celery's teardown of a connection whose Redis just died.

The crash this pins (a 60 s-outage chaos run, both workers dead with `Unrecoverable error:
AttributeError("'NoneType' object has no attribute 'hostname'")`): the pidbox's fanout read
fails first, while the task channel still waits for its poll reply. Celery's
`on_connection_error_after_connected` then runs `connection.collect()`: the task channel's close
fails draining that poll (before its restore), the transport's channel loop stops at the pidbox
channel (deleting its fanout queue fails), and the transport lets go of its client. The second
close, `connection.close()`, restores the held messages on a channel that can no longer build a
Redis client: an AttributeError, which nothing expects, and the worker exits.

Here the same teardown runs against a real Redis killed with -9, through Celery's own method.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from celery.worker.consumer.consumer import Consumer as CeleryConsumer
from kombu import Connection, Exchange, Queue
from kombu import Consumer as KombuConsumer

from tests.fixtures.crash_redis import CrashableRedis
from tests.fixtures.ops import wait_for

pytestmark = pytest.mark.redis


@pytest.fixture
def crash_redis(tmp_path: Path) -> Iterator[CrashableRedis]:
    server = CrashableRedis(tmp_path / "redis").start()
    yield server
    server.stop()


def hold_three(conn: Connection) -> list[Any]:
    """Three messages taken and not acknowledged, as a worker's prefetch holds them."""
    queue = Queue("work", Exchange("work", "direct"), "work")
    with conn.Producer() as producer:
        for number in range(3):
            producer.publish({"n": number}, exchange=queue.exchange, routing_key="work",
                             declare=[queue], serializer="json")
    held: list[Any] = []
    KombuConsumer(conn.default_channel, [queue], callbacks=[lambda _b, m: held.append(m)],
                  accept=["json"]).consume()
    wait_for(lambda: conn.drain_events(timeout=1) or len(held) == 3, 30, "three deliveries")
    return held


def pidbox_like(conn: Connection) -> Any:
    """A second channel consuming an auto-delete fanout queue, as the remote control does."""
    channel = conn.channel()
    queue = Queue("node.pidbox", Exchange("pidbox", "fanout", auto_delete=True),
                  auto_delete=True)
    KombuConsumer(channel, [queue], no_ack=True, accept=["json"]).consume()
    return channel


def test_teardown_after_redis_died_keeps_the_worker_and_the_held_messages(
    crash_redis: CrashableRedis,
) -> None:
    conn = Connection(crash_redis.url, transport="worker.broker.guard:GuardedTransport",
                      transport_options={"visibility_timeout": 30})
    conn.connect()
    held = hold_three(conn)
    pidbox_like(conn)
    task_channel = conn.default_channel
    task_channel._reliable_idle = True  # queues found empty: the poll waits in Redis (BLMOVE)
    task_channel._brpop_start()  # the event loop's pending poll: a reply is awaited
    assert task_channel._in_poll

    crash_redis.kill9()
    error = redis.ConnectionError("the pidbox read failed")
    stub = SimpleNamespace(
        connection=conn,
        app=SimpleNamespace(conf=SimpleNamespace(
            worker_cancel_long_running_tasks_on_connection_loss=True,
            worker_enable_prefetch_count_reduction=False)))
    # Celery's own teardown of a lost connection: before the fix, an AttributeError here.
    CeleryConsumer.on_connection_error_after_connected(stub, error)  # type: ignore[arg-type]
    assert stub.connection is None

    crash_redis.restart()
    client = redis.Redis.from_url(crash_redis.url)
    try:
        # Redis was away during the restore: the three stay in `unacked` for the sweep.
        tags = {m.delivery_tag for m in held}
        assert {t.decode() for t in client.hkeys("unacked")} == tags
        assert client.llen("work") == 0
        # A task that finishes after the reconnect acknowledges on its old channel.
        held[0].ack()
        assert {t.decode() for t in client.hkeys("unacked")} == tags - {held[0].delivery_tag}
        assert client.zscore("unacked_index", held[0].delivery_tag) is None
    finally:
        client.close()


def test_a_channel_whose_transport_let_go_still_acks_or_fails_as_a_connection_error(
    crash_redis: CrashableRedis,
) -> None:
    """The state the crash left: pools dropped by a close, the transport's client gone."""
    conn = Connection(crash_redis.url, transport="worker.broker.guard:GuardedTransport")
    conn.connect()
    held = hold_three(conn)
    channel = conn.default_channel
    unused = conn.channel()  # never built a Redis client of its own
    channel._disconnect_pools()
    transport = conn.transport
    transport.client = None

    held[0].ack()  # a task that finished late: its ack still reaches Redis
    client = redis.Redis.from_url(crash_redis.url)
    try:
        assert client.hexists("unacked", held[0].delivery_tag) == 0
        assert client.hlen("unacked") == 2
    finally:
        client.close()
    with pytest.raises(redis.ConnectionError):  # what every teardown path expects
        unused.qos.restore_unacked()
    crash_redis.kill9()
    with pytest.raises(redis.ConnectionError):
        held[1].ack()

    crash_redis.restart()
    conn.release()  # the close restores the two still held, through the remembered parameters
    client = redis.Redis.from_url(crash_redis.url)
    try:
        assert (client.hlen("unacked"), client.llen("work")) == (0, 2)
    finally:
        client.close()
