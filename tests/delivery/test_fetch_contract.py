"""The reliable fetch is the code that runs: kombu's private methods it overrides are checked.

worker/broker/fetch.py overrides private methods of kombu's Redis channel. Were kombu to rename
them, the override would be skipped without a sound and stock BRPOP (which a kill -9 can make
lose a message) would run, with every other test still green. This test watches Redis (MONITOR)
while the app's own transport consumes a lead, and fails unless the pop script ran by SHA and
wrote the `unacked` entry itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu import Consumer, Queue
from kombu.transport.redis import Channel as RedisChannel

from worker.base.errors import ConfigError
from worker.base.names import LEADS_QUEUE
from worker.broker.fetch import POP
from worker.broker.fetch_contract import kombu_contract_problem
from worker.celery import make_app
from worker.leads.lead import parse_lead
from worker.leads.wire import encode_message

pytestmark = pytest.mark.redis
REPO = Path(__file__).resolve().parents[2]
END = "fetch-contract-end"


def watched(redis_url: str, work: Any) -> list[dict[str, Any]]:
    """Every command Redis ran while `work()` ran (MONITOR), in order."""
    watcher = redis.Redis.from_url(redis_url, socket_timeout=15)  # the read deadline
    marker = redis.Redis.from_url(redis_url)
    commands: list[dict[str, Any]] = []
    try:
        with watcher.monitor() as monitor:
            work()
            marker.echo(END)
            while True:
                command = monitor.next_command()
                if command["command"] == f"ECHO {END}":
                    return commands
                commands.append(command)
    finally:
        marker.close()
        watcher.close()


def test_the_apps_transport_pops_with_the_script_and_the_script_writes_unacked(
    redis_url: str, redis_client: redis.Redis, make_settings: Any
) -> None:
    app = make_app(make_settings(redis_url=redis_url))
    message = encode_message(parse_lead({"email": "ada@engines.example"}), task_id="contract-1")
    tag = json.loads(message)["properties"]["delivery_tag"]
    redis_client.lpush(LEADS_QUEUE, message)
    in_unacked_at_delivery: list[bool] = []

    def on_message(_body: Any, received: Any) -> None:
        in_unacked_at_delivery.append(redis_client.hexists("unacked", received.delivery_tag))
        received.ack()

    def consume() -> None:
        with app.connection_for_read() as conn:
            consumer = Consumer(conn.default_channel, [Queue(LEADS_QUEUE)],
                                callbacks=[on_message], accept=["json"])
            consumer.consume()
            conn.drain_events(timeout=10)

    try:
        commands = watched(redis_url, consume)
    finally:
        app.close()

    def ran(name: str, *, by_lua: bool) -> list[str]:
        return [c["command"] for c in commands
                if c["command"].split(" ", 1)[0].upper() == name
                and (c["client_type"] == "lua") == by_lua]

    assert in_unacked_at_delivery == [True]
    assert redis_client.hlen("unacked") == 0  # acknowledged
    pops = ran("EVALSHA", by_lua=False)
    assert pops and all(p.split(" ")[1] == POP.sha for p in pops), pops
    assert ran("BRPOP", by_lua=False) == []  # stock kombu fetch never ran
    assert ran("EVAL", by_lua=False) == []  # no script text sent
    assert [c for c in ran("RPOP", by_lua=True) if c.split(" ")[1] == LEADS_QUEUE]
    assert [c for c in ran("HSET", by_lua=True) if c.split(" ")[1:3] == ["unacked", tag]]
    assert ran("HSET", by_lua=False) == []  # kombu's own second write is gone


def test_a_kombu_without_the_overridden_methods_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, make_settings: Any
) -> None:
    assert kombu_contract_problem() is None
    monkeypatch.delattr(RedisChannel, "_brpop_read")
    problem = kombu_contract_problem()
    assert problem is not None and "kombu.transport.redis.Channel._brpop_read" in problem
    with pytest.raises(ConfigError, match="_brpop_read"):
        make_app(make_settings())


def test_celery_a_worker_stops_with_one_line_when_kombu_renamed_a_method() -> None:
    code = ("import kombu.transport.redis as r; del r.Channel._brpop_start; "
            "import worker.celery")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LEADSYNC_")},
           "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 3
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("leadsync: configuration error: leadsync's reliable fetch needs "
                               "kombu.transport.redis.Channel._brpop_start")


def test_a_channel_whose_polls_do_not_reach_the_override_is_refused() -> None:
    from types import SimpleNamespace

    from worker.broker.fetch_contract import BrokerContractError, check_channel_instance

    def stock_read() -> None: ...

    channel = SimpleNamespace(handlers={"BRPOP": stock_read}, _brpop_read=lambda: None,
                              _queue_cycle=None)
    with pytest.raises(BrokerContractError, match="_brpop_read"):
        check_channel_instance(channel)
