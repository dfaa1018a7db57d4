"""Two apps in one process, each built by make_app on its own Redis database: the guarded
channel judges and keeps what it refuses with the settings of the app it belongs to (its
transport options), not the environment's (which points at nothing here)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu import Consumer, Queue

from worker.base.keys import Keys
from worker.base.names import LEADS_QUEUE
from worker.base.priority import queued
from worker.celery import make_app
from worker.demo.embedded_redis import EmbeddedRedis
from worker.leads.lead import parse_lead
from worker.leads.wire import encode_message

pytestmark = pytest.mark.redis

DATABASES = (3, 4)


@pytest.fixture
def two_databases(redis_server: EmbeddedRedis) -> Iterator[list[redis.Redis]]:
    clients = [redis.Redis(port=redis_server.port, db=db) for db in DATABASES]
    for client in clients:
        client.flushdb()
    yield clients
    for client in clients:
        client.flushdb()
        client.close()


def consume_one_good(app: Any, good_lead_id: str, timeout_s: float = 10) -> None:
    """Drain `leads` through the app's transport until the good message arrives."""
    received: list[str] = []

    def on_message(body: Any, message: Any) -> None:
        received.append(body[0][0]["lead_id"])
        message.ack()

    with app.connection_for_read() as conn, Consumer(
            conn.default_channel, queues=[Queue(LEADS_QUEUE)], callbacks=[on_message],
            accept=["json"]):
        deadline = time.monotonic() + timeout_s
        while good_lead_id not in received:
            assert time.monotonic() < deadline, "the good message never arrived"
            with contextlib.suppress(TimeoutError):
                conn.drain_events(timeout=1)
    app.close()


def test_two_apps_keep_refused_messages_with_their_own_settings(
    redis_server: EmbeddedRedis, two_databases: list[redis.Redis], make_settings: Any
) -> None:
    first_db, second_db = two_databases
    apps = [make_app(make_settings(redis_url=f"redis://127.0.0.1:{redis_server.port}/{db}",
                                   key_prefix=prefix, max_message_bytes=max_bytes))
            for db, prefix, max_bytes in ((DATABASES[0], "alpha", 4096),
                                          (DATABASES[1], "beta", 1_048_576))]
    # A valid message of 5,000 bytes: over the first app's limit, within the second's.
    big = encode_message(parse_lead({"email": "big@x.example", "source": "s" * 90,
                                     "custom_fields": {f"f{n}": "v" * 180 for n in range(25)}}))
    assert 4096 < len(big) < 1_048_576
    unknown = json.loads(encode_message(parse_lead({"email": "u@x.example"})))
    unknown["headers"]["task"] = "other.task"
    for client in (first_db, second_db):
        good = parse_lead({"email": f"good{client.connection_pool.connection_kwargs['db']}"
                                    "@x.example"})
        client.lpush(LEADS_QUEUE, json.dumps(unknown), big, encode_message(good))
        consume_one_good(apps[0] if client is first_db else apps[1], good.lead_id)

    kept_first = [json.loads(raw) for raw in first_db.lrange(Keys("alpha").malformed, 0, -1)]
    kept_second = [json.loads(raw) for raw in second_db.lrange(Keys("beta").malformed, 0, -1)]
    assert [entry["reason"] for entry in kept_first] == [
        "unknown task 'other.task'",
        f"message is {len(big)} bytes, over LEADSYNC_MAX_MESSAGE_BYTES (4096)"]
    assert [entry["reason"] for entry in kept_second] == ["unknown task 'other.task'"]
    # Nothing under the other app's key or the default one, nothing left unacknowledged.
    for client, other in ((first_db, "beta"), (second_db, "alpha")):
        assert client.llen(Keys(other).malformed) == 0
        assert client.llen(Keys().malformed) == 0
        assert client.hlen("unacked") == 0
        assert queued(client, LEADS_QUEUE) == 0


def test_a_message_celery_cannot_unpack_is_kept_by_the_request_net(
    redis_server: EmbeddedRedis, two_databases: list[redis.Redis], make_settings: Any
) -> None:
    # The channel's checks come first; this net catches what they did not foresee (here a
    # message that never went through them), in the malformed list of the message's own app.
    from celery.exceptions import InvalidTaskError

    from worker.broker.guard import GuardedRequest

    app = make_app(make_settings(redis_url=f"redis://127.0.0.1:{redis_server.port}/"
                                           f"{DATABASES[0]}", key_prefix="gamma"))
    app.loader.import_default_modules()
    message = json.loads(encode_message(parse_lead({"email": "r@x.example"})))
    del message["headers"]["id"]
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        kombu_message = channel.Message(message, channel=channel)
        with pytest.raises(InvalidTaskError, match=r"cannot be unpacked \(KeyError\)"):
            GuardedRequest(kombu_message, app=app, task=app.tasks["leadsync.sync_lead"])
    app.close()
    (kept,) = [json.loads(raw) for raw in two_databases[0].lrange(Keys("gamma").malformed,
                                                                   0, -1)]
    assert kept["reason"] == "task message cannot be unpacked (KeyError)"
    assert "r@x.example" in kept["raw"]  # the message itself is kept, for a person to read
