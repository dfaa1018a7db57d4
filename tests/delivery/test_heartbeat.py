"""The heartbeat keeps a live consumer's messages out of kombu's restore sweep; a silent one's come
back at the next sweep. kombu consumers on a real Redis; the worker wiring is checked on the app.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from kombu import Connection, Consumer, Queue
from kombu.transport.redis import Transport as RedisTransport

from worker.base.priority import queued
from worker.broker.fetch import ReliableChannel
from worker.broker.heartbeat import (
    UnackedHeartbeat,
    heartbeat_interval_s,
    held_tags,
    refresh_unacked,
    sweep_interval_s,
)
from worker.celery import make_app
from worker.leads.lead import parse_lead
from worker.leads.wire import encode_message, queue_list

pytestmark = pytest.mark.redis
VISIBILITY_S = 2.0


class ReliableTransport(RedisTransport):
    Channel = ReliableChannel


class Holder:
    """A consumer that takes messages and keeps them unacknowledged."""

    def __init__(self, redis_url: str) -> None:
        self.conn = Connection(redis_url, transport=ReliableTransport,
                               transport_options={"visibility_timeout": VISIBILITY_S})
        self.held: list[Any] = []
        self.consumer = Consumer(self.conn.default_channel, [Queue("leads")],
                                 callbacks=[lambda body, message: self.held.append(message)],
                                 accept=["json"])
        self.consumer.consume()

    @property
    def channel(self) -> Any:
        return self.conn.default_channel

    def take(self, count: int, timeout_s: float = 10) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.held) < count:
            assert time.monotonic() < deadline, f"took {len(self.held)} of {count}"
            with contextlib.suppress(TimeoutError):
                self.conn.drain_events(timeout=0.2)

    def close(self) -> None:
        self.channel.do_restore = False  # a dead worker does not restore at shutdown
        self.conn.close()


@pytest.fixture
def holder(redis_url: str) -> Iterator[Holder]:
    made = Holder(redis_url)
    yield made
    made.close()


def sweep(redis_url: str) -> None:
    """Another worker's restore sweep, with the same visibility timeout."""
    with Connection(redis_url, transport=ReliableTransport,
                    transport_options={"visibility_timeout": VISIBILITY_S}) as conn:
        channel: Any = conn.default_channel
        channel.qos.restore_visible(interval=1)


def push(client: redis.Redis, count: int) -> None:
    for n in range(count):
        lead = parse_lead({"email": f"hb{n}@beat.example"})
        client.lpush(queue_list(lead), encode_message(lead))


def test_a_beating_holder_keeps_its_messages_and_a_silent_one_loses_them(
    holder: Holder, redis_client: redis.Redis, redis_url: str
) -> None:
    push(redis_client, 3)
    holder.take(3)
    assert sorted(held_tags(holder.channel.qos)) == sorted(
        m.delivery_tag for m in holder.held)

    # Beating: three visibility timeouts pass, every sweep finds nothing to give back.
    deadline = time.monotonic() + 3 * VISIBILITY_S
    while time.monotonic() < deadline:
        assert refresh_unacked(holder.channel) == 3
        sweep(redis_url)
        assert redis_client.hlen("unacked") == 3
        assert queued(redis_client, "leads") == 0
        time.sleep(VISIBILITY_S / 5)  # a heartbeat cadence, not a wait for a result

    # Silent (the holder died): once the timeout has passed, a sweep gives all three back.
    stale_since = time.time()
    while time.time() < stale_since + VISIBILITY_S * 1.1:
        time.sleep(0.05)
    sweep(redis_url)
    assert queued(redis_client, "leads") == 3
    assert redis_client.hlen("unacked") == 0


def test_an_acknowledged_message_is_not_written_back(
    holder: Holder, redis_client: redis.Redis
) -> None:
    push(redis_client, 2)
    holder.take(2)
    first, second = holder.held
    first.ack()
    assert held_tags(holder.channel.qos) == [second.delivery_tag]
    # The ack's deletion rides in the channel's next poll (worker/broker/fetch.py).
    with contextlib.suppress(TimeoutError):
        holder.conn.drain_events(timeout=0.2)
    assert not redis_client.hexists("unacked", first.delivery_tag)
    # Even with the acked tag still listed (a race with the ack), ZADD XX adds nothing back.
    holder.channel.qos._dirty.discard(first.delivery_tag)
    refresh_unacked(holder.channel)
    assert redis_client.zscore("unacked_index", first.delivery_tag) is None
    assert redis_client.zscore("unacked_index", second.delivery_tag) is not None


def test_nothing_held_costs_no_command(holder: Holder) -> None:
    assert refresh_unacked(holder.channel) == 0


def test_intervals_follow_the_visibility_timeout() -> None:
    assert heartbeat_interval_s(30) == 3
    assert sweep_interval_s(30) == 5
    # Back within a minute at the default: expiry plus one sweep, with room for the queue.
    assert 30 + sweep_interval_s(30) < 60
    assert heartbeat_interval_s(1) == pytest.approx(0.2)


def test_the_worker_app_runs_the_heartbeat_and_sweeps_at_the_default(
    make_settings: Callable[..., Any],
) -> None:
    settings = make_settings()
    app = make_app(settings)
    options = app.conf.broker_transport_options
    assert settings.visibility_timeout_s == 30
    assert options["visibility_timeout"] == 30
    assert options["unacked_restore_interval"] == sweep_interval_s(30)
    assert options["unacked_restore_throttle"] == 1
    assert UnackedHeartbeat in app.steps["consumer"]


def test_a_consumer_closing_warm_hands_back_what_it_holds_at_once(
    redis_client: redis.Redis, redis_url: str
) -> None:
    """What a warm shutdown ends with: messages taken but not finished go back to the queue when
    the connection closes, with no visibility timeout to wait for."""
    push(redis_client, 2)
    closing = Holder(redis_url)
    closing.take(2)
    assert redis_client.hlen("unacked") == 2
    closing.conn.close()  # do_restore left on, as in a worker's warm shutdown
    assert redis_client.hlen("unacked") == 0
    assert redis_client.zcard("unacked_index") == 0
    assert queued(redis_client, "leads") == 2
