"""Backlogs in hundreds against the private Redis and the sandbox: the stager
(worker/bulk/backlog.py) takes leads without consent off their list, stages each once and hands
the rest on to the workers, losing nothing when a run dies between its steps or loses the lock;
the settle of a big import counts each lead once even when repeated after a crash."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.bulk.test_bulk_import import BULK_ENV, drain, leads
from tests.fixtures.delivery import DeliveryStack
from tests.fixtures.leads import queue_entries
from worker.account import Account
from worker.base.keys import Keys
from worker.base.names import LEADS_QUEUE
from worker.base.priority import BACKLOG_PRIORITY, HANDED_ON_PRIORITY, list_for
from worker.base.settings import Settings
from worker.bulk.backlog import TAKE, TAKE_SCRIPT
from worker.bulk.settle import Settler
from worker.leads.lead import Lead, parse_lead
from worker.leads.wire import encode_message, parse_message
from worker.ledger import delivered

pytestmark = pytest.mark.redis
LIST = "0c4a6c36-3a5b-11ee-8c55-fa163e56c9b0"
BACKLOG = list_for(LEADS_QUEUE, BACKLOG_PRIORITY)
HANDED_ON = list_for(LEADS_QUEUE, HANDED_ON_PRIORITY)


@pytest.fixture
def settings(make_settings: Any, redis_url: str) -> Settings:
    built: Settings = make_settings(redis_url=redis_url, bulk="always", list_ids=[LIST])
    return built


@pytest.fixture
def lock(settings: Settings, redis_client: redis.Redis) -> Iterator[Any]:
    bulk_lock = Keys(settings.key_prefix, settings.account).bulk.lock
    held = redis_client.lock(bulk_lock, timeout=60, blocking=False)
    assert held.acquire()
    yield held
    redis_client.delete(Keys(settings.key_prefix, settings.account).bulk.lock)


def push(client: redis.Redis, items: list[Lead]) -> None:
    client.lpush(BACKLOG, *(encode_message(item) for item in items))


def staged_states(settings: Settings, client: redis.Redis, items: list[Lead]) -> set[str]:
    ledger = Account(settings, client).ledger
    return {ledger.state(item.lead_id) for item in items}


def test_a_run_stages_the_backlog_in_hundreds_and_hands_the_rest_to_the_workers(
        settings: Settings, redis_client: redis.Redis, lock: Any) -> None:
    backlog = leads(2 * TAKE + 7, tag="b")
    consented = parse_lead({"email": "yes@bulk.example", "consent": True})
    odd = json.loads(encode_message(consented))  # a producer's consented lead at priority 9
    odd["properties"]["priority"] = BACKLOG_PRIORITY
    foreign = [json.dumps(odd).encode(), b"not json at all"]
    push(redis_client, backlog[:TAKE])
    redis_client.lpush(BACKLOG, *foreign)
    push(redis_client, backlog[TAKE:])
    staged = Account(settings, redis_client).backlog_stager().run(lock.local.token, lambda: True,
                                                        time.monotonic() + 60)
    assert staged == len(backlog)
    keys = Keys(settings.key_prefix, settings.account).bulk
    assert redis_client.zcard(keys.staged) == len(backlog)
    assert staged_states(settings, redis_client, backlog) == {"staged"}
    assert not redis_client.exists(BACKLOG, keys.holding)
    # Handed on, in their order, ahead of the backlog and behind consented leads.
    assert list(reversed(redis_client.lrange(HANDED_ON, 0, -1))) == foreign
    assert queue_entries(redis_client) == foreign
    # A second run finds nothing, and a copy of a staged lead is not staged twice.
    push(redis_client, backlog[:3])
    assert Account(settings, redis_client).backlog_stager().run(lock.local.token, lambda: True,
                                                     time.monotonic() + 60) == 0
    assert redis_client.zcard(keys.staged) == len(backlog) and not redis_client.llen(BACKLOG)


def test_entries_a_dead_run_held_are_staged_by_the_next_once(
        settings: Settings, redis_client: redis.Redis, lock: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    backlog = leads(TAKE + 50, tag="c")
    push(redis_client, backlog)
    stager = Account(settings, redis_client).backlog_stager()

    def dies(leads: list[Lead]) -> Any:  # after the begins, before the stage steps
        raise ConnectionError("the process died here")

    monkeypatch.setattr(stager.gate, "stage_many", dies)
    with pytest.raises(ConnectionError):
        stager.run(lock.local.token, lambda: True, time.monotonic() + 60)
    keys = Keys(settings.key_prefix, settings.account).bulk
    assert redis_client.llen(keys.holding) == TAKE  # what the dead run took is held, not lost
    assert redis_client.llen(BACKLOG) == 50 and not redis_client.zcard(keys.staged)
    assert staged_states(settings, redis_client, backlog[:TAKE]) == {"in_flight"}
    again = Account(settings, redis_client).backlog_stager().run(lock.local.token, lambda: True,
                                                      time.monotonic() + 60)
    assert again == len(backlog)  # the dead run's own leads taken again: the same holder
    assert redis_client.zcard(keys.staged) == len(backlog)
    assert staged_states(settings, redis_client, backlog) == {"staged"}
    assert not redis_client.exists(BACKLOG, keys.holding)


def test_a_run_that_lost_the_lock_takes_and_drops_nothing(
        settings: Settings, redis_client: redis.Redis, lock: Any) -> None:
    backlog = leads(10, tag="d")
    push(redis_client, backlog)
    assert Account(settings, redis_client).backlog_stager().run(b"someone-else", lambda: True,
                                                     time.monotonic() + 60) == 0
    assert redis_client.llen(BACKLOG) == 10


def test_auto_mode_below_the_threshold_leaves_the_backlog_to_the_workers(
        make_settings: Any, redis_url: str, redis_client: redis.Redis) -> None:
    settings = make_settings(redis_url=redis_url, bulk="auto", list_ids=[LIST],
                             bulk_threshold=1_000)
    bulk_lock = Keys(settings.key_prefix, settings.account).bulk.lock
    held = redis_client.lock(bulk_lock, timeout=60, blocking=False)
    assert held.acquire()
    push(redis_client, leads(20, tag="e"))
    assert Account(settings, redis_client).backlog_stager().run(held.local.token, lambda: True,
                                                     time.monotonic() + 60) == 0
    assert redis_client.llen(BACKLOG) == 20


def test_the_bulk_task_alone_imports_a_backlog_pushed_by_a_producer(
        delivery_stack: Any, redis_client: redis.Redis) -> None:
    stack: DeliveryStack = delivery_stack(settings_env=BULK_ENV)
    backlog = leads(1_200, tag="f")
    push(redis_client, backlog)
    importer = Account(stack.settings, redis_client).importer()
    assert importer.run().staged == len(backlog)  # no worker ran: the task staged them itself
    drain(importer, redis_client)
    ledger = Account(stack.settings, redis_client).ledger
    assert {ledger.get(item.lead_id).get("action") for item in backlog} == {"imported"}
    stats = stack.sandbox.stats()
    assert stats["contacts"]["count"] == len(backlog)
    assert stats["activities"]["imports"] == 1
    assert not redis_client.llen(BACKLOG)


def test_a_settle_repeated_after_a_crash_before_its_count_counts_each_lead_once(
        settings: Settings, redis_client: redis.Redis, lock: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    backlog = leads(30, tag="g")
    push(redis_client, backlog)
    Account(settings, redis_client).backlog_stager().run(lock.local.token, lambda: True,
                                              time.monotonic() + 60)
    ids = [item.lead_id for item in backlog]
    emails = [item.email for item in backlog]
    activity = {"state": "completed", "activity_errors": [],
                "status": {"items_total_count": len(ids)}}
    settler = settler_of(Account(settings, redis_client))
    count = settler._count

    def crash(**_: Any) -> None:
        raise ConnectionError("killed after the ledger steps, before the count")

    monkeypatch.setattr(settler, "_count", crash)
    assert settler.completed(ids, emails, activity, "a-1")["delivered"] == len(ids)
    keys = Keys(settings.key_prefix, settings.account)
    assert redis_client.hget(keys.stats, "imported") is None  # the count was lost with the crash
    assert delivered.counts(redis_client, keys).total == len(ids)  # counted by each step
    monkeypatch.setattr(settler, "_count", count)
    for _ in range(2):  # the batch is still there: the next run settles it again, and again
        assert settler.completed(ids, emails, activity, "a-1")["delivered"] == 0
        assert int(redis_client.hget(keys.stats, "imported") or 0) == len(ids)
        assert delivered.counts(redis_client, keys) == delivered.Delivered(len(ids), len(ids))
    assert staged_states(settings, redis_client, backlog) == {"delivered"}


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_what_a_dead_run_held_goes_back_to_the_queue_when_bulk_is_no_longer_on(
        make_settings: Any, redis_url: str, redis_client: redis.Redis, lock: Any,
        settings: Settings, mode: str) -> None:
    backlog = leads(30, tag="h")
    push(redis_client, backlog)
    keys = Keys(settings.key_prefix, settings.account).bulk
    stager = Account(settings, redis_client).backlog_stager()
    assert TAKE_SCRIPT.run(redis_client, stager._lists, [lock.local.token, 20, 0]) == 20
    lock.release()  # the run dies holding 20: its lock expires
    later = make_settings(redis_url=redis_url, bulk=mode, list_ids=[LIST], bulk_threshold=1_000)
    if mode == "auto":  # 30 queued, under the threshold: the next bulk run gives them back
        held = redis_client.lock(keys.lock, timeout=60, blocking=False)
        assert held.acquire()
        Account(later, redis_client).backlog_stager().run(held.local.token, lambda: True,
                                               time.monotonic() + 60)
    else:  # no bulk task runs at all: the reconciler does it
        Account(later, redis_client).reconciler().run()
    assert not redis_client.exists(keys.holding)
    assert [parse_message(raw).lead_id for raw in queue_entries(redis_client)] == [
        item.lead_id for item in backlog]  # all back, oldest first, for the workers


def settler_of(account: Account) -> Settler:
    return Settler(account, account.ledger, account.dead_letters)
