"""Redis connections: plain URLs and Redis Sentinel URLs (Celery's form) reach the same data."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from worker.base.redis_conn import get_redis
from worker.demo.embedded_redis import EmbeddedRedis, find_redis_server, free_port


@pytest.fixture
def sentinel_url(redis_server: EmbeddedRedis, tmp_path: Path) -> Iterator[str]:
    """A real redis-sentinel watching the private server as master `leadsync-test`."""
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor leadsync-test 127.0.0.1 {redis_server.port} 1\n"
    )
    proc = subprocess.Popen(
        [find_redis_server(), str(conf), "--sentinel"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    deadline = time.monotonic() + 10
    while True:
        try:
            if client.execute_command("SENTINEL", "MASTERS"):
                break
        except redis.ConnectionError:
            pass
        assert time.monotonic() < deadline, "sentinel did not start"
        time.sleep(0.05)
    client.close()
    yield f"sentinel://127.0.0.1:{port}/0;sentinel://127.0.0.1:{free_port()}/0"
    proc.terminate()
    proc.wait(timeout=10)


def test_plain_url_reaches_the_server(redis_url: str, make_settings) -> None:
    client = get_redis(make_settings(redis_url=redis_url))
    client.set("leadsync:probe", "1")
    assert client.get("leadsync:probe") == b"1"
    assert get_redis(make_settings(redis_url=redis_url)) is client  # one pool per URL


def test_sentinel_url_finds_the_master(
    sentinel_url: str, redis_url: str, redis_client: redis.Redis, make_settings
) -> None:
    # The second sentinel in the URL is down: failover lists may name dead sentinels.
    settings = make_settings(redis_url=sentinel_url, redis_sentinel_master="leadsync-test")
    client = get_redis(settings)
    client.set("leadsync:via-sentinel", "yes")
    assert redis_client.get("leadsync:via-sentinel") == b"yes"


def test_workers_behind_sentinel_get_the_guarded_reliable_fetch(
    sentinel_url: str, redis_url: str, redis_client: redis.Redis, make_settings
) -> None:
    from kombu import Consumer, Queue

    from worker.broker.guard import GuardedChannel
    from worker.celery import make_app
    from worker.leads.lead import parse_lead
    from worker.leads.wire import encode_message

    app = make_app(make_settings(redis_url=sentinel_url, redis_sentinel_master="leadsync-test"))
    redis_client.lpush("leads", encode_message(parse_lead({"email": "ada@x.example"})))
    received: list[Any] = []
    with app.connection_for_read() as conn:
        assert isinstance(conn.default_channel, GuardedChannel)
        consumer = Consumer(conn.default_channel, [Queue("leads")], accept=["json"],
                            callbacks=[lambda body, message: received.append(message)])
        consumer.consume()
        conn.drain_events(timeout=5)
        # Taken through Sentinel, not acknowledged yet: kombu's `unacked` already holds it.
        assert len(received) == 1 and redis_client.hlen("unacked") == 1
        received[0].ack()  # (closing with a message unacked would restore it on a fresh pool)
    # The ack's deletion rides in the next poll, or goes when the channel closes.
    assert redis_client.hlen("unacked") == 0


def test_replies_are_parsed_by_hiredis() -> None:
    """pyproject asks for redis[hiredis]: every reply a worker reads goes through the C parser
    (the pure-Python one was 8 % of a worker's time). An install without it fails here."""
    from redis.connection import DefaultParser

    assert DefaultParser.__name__ == "_HiredisParser"
