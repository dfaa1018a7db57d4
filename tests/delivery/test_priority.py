"""Consented leads first: every way a lead message enters or re-enters Redis keeps its priority.

Against the private Redis: the producers (enqueue, the intake's script) put a lead on the list
of its priority, and each path that puts a message back (the ledger's requeue, resume and
replay, the promoter, the bulk path's send-back, kombu's sweep of `unacked` and a task's
`Reject(requeue=True)`) puts it on the same list, where kombu's own `_put` would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu import Connection, Consumer, Queue

from worker.account import Account
from worker.base.names import LEADS_QUEUE
from worker.base.priority import BACKLOG_PRIORITY, list_for, priority_for, queue_lists, queued
from worker.base.scope import Scope
from worker.base.settings import Settings
from worker.bulk.settle import Settler
from worker.intake.admission import Accepter
from worker.leads.enqueue import enqueue_lead, enqueue_leads
from worker.leads.lead import Lead, parse_lead
from worker.leads.wire import encode_message, parse_message
from worker.ledger.deadletter import DeadLetter
from worker.ledger.ledger import Ledger
from worker.ledger.parking import QUOTA
from worker.ledger.reconcile import STALE_S

pytestmark = pytest.mark.redis
CONSENT = pytest.mark.parametrize("consent", [True, False], ids=["consented", "no-consent"])


def where(client: redis.Redis) -> dict[str, list[str]]:
    """lead_id of every message on each non-empty list of `leads`, oldest first."""
    found = {}
    for name in queue_lists(LEADS_QUEUE):
        raw = client.lrange(name, 0, -1)
        if raw:
            found[name] = [parse_message(item).lead_id for item in reversed(raw)]
    return found


def lead(n: int, consent: bool) -> Lead:
    return parse_lead({"email": f"p{n}@priority.example", "consent": consent})


def expected(*leads: Lead) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for one in leads:
        out.setdefault(list_for(LEADS_QUEUE, priority_for(one.consent)), []).append(one.lead_id)
    return out


@pytest.fixture
def settings(make_settings: Any, redis_url: str) -> Settings:
    built: Settings = make_settings(redis_url=redis_url)
    return built


def test_the_lists_are_kombus_and_the_backlog_is_popped_last(redis_url: str) -> None:
    with Connection(redis_url) as conn:
        channel: Any = conn.default_channel
        assert queue_lists(LEADS_QUEUE) == tuple(channel._q_for_pri(LEADS_QUEUE, p)
                                           for p in channel.priority_steps)
        for priority in range(-2, 13):  # kombu clamps a message's priority to 0..9 first
            clamped = channel._get_message_priority({"properties": {"priority": priority}})
            kombu_list = channel._q_for_pri(LEADS_QUEUE, clamped)
            assert list_for(LEADS_QUEUE, priority) == kombu_list, priority
    assert queue_lists(LEADS_QUEUE)[-1] == list_for(LEADS_QUEUE, BACKLOG_PRIORITY) != LEADS_QUEUE


def test_producers_put_consented_leads_on_leads_and_the_rest_behind(
        settings: Settings, redis_client: redis.Redis) -> None:
    mixed = [lead(n, consent=n % 3 == 0) for n in range(9)]
    report = enqueue_leads([one.to_json_dict() for one in mixed], redis=redis_client,
                           batch_size=4)
    assert report.enqueued == 9
    single = lead(99, consent=True)
    enqueue_lead(single.to_json_dict(), redis=redis_client)
    assert where(redis_client) == expected(*mixed, single)  # each list in the order given
    assert queued(redis_client, LEADS_QUEUE) == 10


@CONSENT
def test_the_intake_script_pushes_each_lead_on_its_list(
        settings: Settings, redis_client: redis.Redis, redis_url: str, consent: bool) -> None:
    from redis.asyncio import Redis as AsyncRedis

    leads = [lead(1, consent), lead(2, not consent)]

    async def post() -> int:
        client = AsyncRedis.from_url(redis_url)
        try:
            accepter = Accepter(Scope(settings, redis_client), client)
            return (await accepter.run(accepter.source("test"), leads)).pushed
        finally:
            await client.aclose()

    assert asyncio.run(post()) == 2
    assert where(redis_client) == expected(*leads)


def taken(ledger: Ledger, one: Lead, *, ago: float = 0.0) -> None:
    task_id = f"task-{one.lead_id}"
    outcome = ledger.begin(one.lead_id, task_id, encode_message(one, task_id=task_id), 5.0,
                           now=time.time() - ago).outcome
    assert outcome == "taken"


@CONSENT
def test_the_promoter_puts_a_due_retry_back_on_its_list(
        settings: Settings, redis_client: redis.Redis, consent: bool) -> None:
    ledger, one = Account(settings, redis_client).ledger, lead(1, consent)
    taken(ledger, one)
    assert ledger.move(one.lead_id, "retry", due=time.time() - 1)[0]
    assert Account(settings, redis_client).schedule.promote() == 1
    assert where(redis_client) == expected(one)


@CONSENT
def test_the_reconciler_puts_a_lost_lead_back_on_its_list(
        settings: Settings, redis_client: redis.Redis, consent: bool) -> None:
    ledger, one = Account(settings, redis_client).ledger, lead(1, consent)
    taken(ledger, one, ago=STALE_S + 50)  # a worker died holding it; its message is gone
    assert Account(settings, redis_client).reconciler().run().requeued == 1
    assert where(redis_client) == expected(one)


@CONSENT
def test_a_parked_lead_resumes_on_its_list(
        settings: Settings, redis_client: redis.Redis, consent: bool) -> None:
    account = Account(settings, redis_client)
    ledger, one = account.ledger, lead(1, consent)
    taken(ledger, one)
    lot = account.parking
    assert lot.park(one, QUOTA, time.time() - 1)[0]
    assert lot.resume_due(sending_possible=True) == 1
    assert where(redis_client) == expected(one)


@CONSENT
def test_a_replayed_dead_letter_goes_back_on_its_list(
        settings: Settings, redis_client: redis.Redis, consent: bool) -> None:
    account = Account(settings, redis_client)
    ledger, one = account.ledger, lead(1, consent)
    taken(ledger, one)
    letters = account.dead_letters
    now = time.time()
    assert letters.add(DeadLetter(lead_id=one.lead_id, reason="refused", reason_code="http_400",
                                  attempts=1, last_status=400, first_seen=now, dead_at=now,
                                  lead=one.to_json_dict(), replayable=True))[0]
    letters.replay(one.lead_id)
    assert where(redis_client) == expected(one)


def test_an_import_that_failed_sends_its_staged_leads_back_on_their_list(
        settings: Settings, redis_client: redis.Redis) -> None:
    # Bulk only stages leads without consent; a failed import sends them back through the
    # schedule, and the promoter pushes them behind the consented ones again.
    ledger, one = Account(settings, redis_client).ledger, lead(1, consent=False)
    taken(ledger, one)
    assert ledger.move(one.lead_id, "stage")[0]
    settler = settler_of(Account(settings, redis_client))
    assert settler.send_back(one.lead_id, "import_failed", "failed")
    later = time.time() + settings.backoff_max_s + 1
    Account(settings, redis_client).schedule.promote_all(now=later)
    assert where(redis_client) == {list_for(LEADS_QUEUE, BACKLOG_PRIORITY): [one.lead_id]}


@pytest.mark.parametrize("given", [-3, 0, 2, 3, 5, 6, 8, 9, 12, 2.9, 5.5, "7", " 4 ", "x",
                                   "5.5", "0x7", "1e1", None, True, [], {}])
def test_the_lua_scripts_pick_the_list_kombu_would_for_any_priority(
        settings: Settings, redis_client: redis.Redis, redis_url: str, given: object) -> None:
    one = lead(1, consent=True)
    message = json.loads(encode_message(one, task_id="t-any"))
    message["properties"]["priority"] = given
    raw = json.dumps(message)
    with Connection(redis_url) as conn:
        channel: Any = conn.default_channel
        kombu_list = channel._q_for_pri(LEADS_QUEUE, channel._get_message_priority(message))
    ledger = Account(settings, redis_client).ledger
    assert ledger.move(one.lead_id, "replay", message=raw)[0]  # ledger.lua's push
    assert [name for name in queue_lists(LEADS_QUEUE) if redis_client.llen(name)] == [kombu_list]
    redis_client.delete(kombu_list)
    # As a retry leaves it: retrying, due now, with this message kept.
    redis_client.hset(ledger.keys.lead_outcome(one.lead_id), "state", "retrying")
    redis_client.set(ledger.keys.lead_message(one.lead_id), raw)
    redis_client.zadd(ledger.keys.schedule, {one.lead_id: time.time() - 1})
    assert Account(settings, redis_client).schedule.promote() == 1  # promote.lua's push
    assert [name for name in queue_lists(LEADS_QUEUE) if redis_client.llen(name)] == [kombu_list]
    redis_client.delete(kombu_list)
    # Parked with this message kept, then resumed: resume_parked.lua's push.
    lot = Account(settings, redis_client).parking
    assert lot.park(one, QUOTA, time.time() - 1)[0]
    redis_client.set(ledger.keys.lead_message(one.lead_id), raw)
    assert lot.resume_due(sending_possible=True) == 1
    assert [name for name in queue_lists(LEADS_QUEUE) if redis_client.llen(name)] == [kombu_list]


@pytest.fixture
def consumer(redis_url: str) -> Iterator[Any]:
    """The worker's own transport (guard + reliable fetch), holding what it receives."""
    from worker.celery import make_app

    app = make_app(Settings(_env_file=None, redis_url=redis_url))  # type: ignore[call-arg]
    held: list[Any] = []
    conn = app.connection_for_read()
    conn.ensure_connection()
    consume = Consumer(conn.default_channel, [Queue(LEADS_QUEUE)],
                       callbacks=[lambda _body, message: held.append(message)],
                       accept=["json"])
    consume.consume()

    def take(count: int) -> list[Any]:
        deadline = time.monotonic() + 10
        while len(held) < count and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                conn.drain_events(timeout=0.5)
        assert len(held) == count
        return held

    try:
        yield take, conn
    finally:
        conn.release()


def test_the_fetch_takes_consented_leads_before_an_older_backlog(
        redis_client: redis.Redis, consumer: Any) -> None:
    take, _conn = consumer
    backlog = [lead(n, consent=False) for n in range(3)]
    person = lead(9, consent=True)
    for one in [*backlog, person]:  # the backlog was queued first
        redis_client.lpush(list_for(LEADS_QUEUE, priority_for(one.consent)), encode_message(one))
    assert lead_id_of(take(1)[0]) == person.lead_id


def lead_id_of(message: Any) -> str:
    args, _kwargs, _embed = message.decode()
    return str(args[0]["lead_id"])


def test_rejected_and_swept_messages_go_back_on_their_lists(
        redis_client: redis.Redis, redis_url: str, consumer: Any) -> None:
    take, _conn = consumer
    person, backlog = lead(1, consent=True), lead(2, consent=False)
    for one in (person, backlog):
        redis_client.lpush(list_for(LEADS_QUEUE, priority_for(one.consent)), encode_message(one))
    first, second = take(2)
    assert (lead_id_of(first), lead_id_of(second)) == (person.lead_id, backlog.lead_id)
    first.reject(requeue=True)  # what `Reject(requeue=True)` does to the message
    assert where(redis_client) == expected(person)
    # The second is held by a "dead" consumer: kombu's sweep of `unacked` brings it back.
    with Connection(redis_url, transport="worker.broker.guard:GuardedTransport",
                    transport_options={"visibility_timeout": 0}) as conn:
        conn.default_channel.qos.restore_visible(interval=1)
    assert where(redis_client) == expected(person, backlog)


def test_celery_calls_get_the_priority_of_their_consent_unless_one_is_given(
        redis_url: str, redis_client: redis.Redis) -> None:
    from worker.celery import make_app

    app = make_app(Settings(_env_file=None, redis_url=redis_url))  # type: ignore[call-arg]
    person, backlog, chosen = lead(1, True), lead(2, False), lead(3, False)
    app.send_task("leadsync.sync_lead", args=[person.to_json_dict()])
    app.send_task("leadsync.sync_lead", args=[backlog.to_json_dict()])
    app.send_task("leadsync.sync_lead", args=[chosen.to_json_dict()], priority=0)
    app.close()
    # Celery's body is base64: its redacted argsrepr header names the lead.
    reprs = {name: " ".join(json.loads(raw)["headers"]["argsrepr"]
                            for raw in redis_client.lrange(name, 0, -1))
             for name in queue_lists(LEADS_QUEUE)}
    assert [name for one in (person, chosen, backlog) for name in reprs
            if one.lead_id in reprs[name]] == [LEADS_QUEUE, LEADS_QUEUE,
                                               list_for(LEADS_QUEUE, BACKLOG_PRIORITY)]


def test_the_reconciler_finds_a_message_waiting_on_the_backlog_list(
        settings: Settings, redis_client: redis.Redis) -> None:
    ledger, one = Account(settings, redis_client).ledger, lead(1, consent=False)
    taken(ledger, one, ago=STALE_S + 50)  # stale in the ledger, yet its message still waits
    redis_client.lpush(list_for(LEADS_QUEUE, BACKLOG_PRIORITY), encode_message(one))
    assert Account(settings, redis_client).reconciler().run().requeued == 0  # no second copy
    assert where(redis_client) == expected(one)


def settler_of(account: Account) -> Settler:
    return Settler(account, account.ledger, account.dead_letters)
