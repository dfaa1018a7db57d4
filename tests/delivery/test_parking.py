"""Parked leads on a real Redis: counts from the per-reason sets (exact through parallel parks and
resumes, recounted when lost or left by an older version), `status` without reading entries,
and resume in batches: each lead's kept message back on the list its priority names, once."""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import pytest
import redis
from kombu import Connection

from tests.fixtures.parked import NOW, lead, park, queued, queued_ids
from worker.account import Account
from worker.base.names import LEADS_QUEUE as QUEUE
from worker.base.settings import Settings
from worker.leads.wire import encode_message
from worker.ledger.parking import QUOTA, REASONS, REAUTH, TOKEN_KEY, ParkingLot, priority_lists
from worker.report.stats import lead_counts

pytestmark = pytest.mark.redis


def recount(client: redis.Redis, lot: ParkingLot) -> dict[str, int]:
    """The counts the slow way: every entry decoded."""
    found = Counter(json.loads(raw)["reason"] for raw in client.hvals(lot.keys.parked_index))
    return {reason: found.get(reason, 0) for reason in REASONS}


@pytest.fixture
def settings(make_settings: Any, redis_url: str) -> Settings:
    built: Settings = make_settings(redis_url=redis_url)
    return built


@pytest.fixture
def lot(settings: Settings, redis_client: redis.Redis) -> ParkingLot:
    return Account(settings, redis_client).parking


def test_counts_stay_equal_to_a_recount_through_parallel_parks_and_resumes(
        settings: Settings, redis_url: str, lot: ParkingLot, redis_client: redis.Redis,
        caplog: pytest.LogCaptureFixture) -> None:
    total, parkers = 1200, 4
    errors: list[BaseException] = []
    done = threading.Event()

    def parker(k: int) -> None:
        mine = Account(settings, redis.Redis.from_url(redis_url)).parking
        try:
            for n in range(k, total, parkers):
                park(mine, lead(n), REASONS[n % 3], resume_at=NOW - 10 if n % 2 else NOW + 99)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    def resumer() -> None:
        mine = Account(settings, redis.Redis.from_url(redis_url)).parking
        try:
            while not done.is_set():
                mine.resume_due(sending_possible=True, now=NOW, batch=7)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=parker, args=(k,)) for k in range(parkers)]
    resumers = [threading.Thread(target=resumer) for _ in range(2)]
    for thread in threads + resumers:
        thread.start()
    for thread in threads:
        thread.join(120)
    done.set()
    for thread in resumers:
        thread.join(60)
    assert not errors, errors
    stored = {reason: int(redis_client.zcard(key)) for reason, key in lot.due_keys.items()}
    assert stored == recount(redis_client, lot)
    # Nothing was ever repaired on the way: the sets were exact all along.
    assert not [r for r in caplog.records if "recounted" in r.getMessage()]
    assert lot.recount() == 0
    lot.resume_due(sending_possible=True, now=NOW)  # what the resumers had not reached yet
    # Every lead due at NOW was resumed once; the others wait, counted.
    ids = queued_ids(redis_client)
    assert len(ids) == len(set(ids)) == total // 2
    assert lot.counts()["by_reason"] == recount(redis_client, lot)
    assert sum(recount(redis_client, lot).values()) == total // 2
    assert {lead(n).lead_id for n in range(1, total, 2)} == set(ids)


def test_status_reads_the_per_reason_sets_not_every_parked_lead(
        settings: Settings, lot: ParkingLot, redis_client: redis.Redis) -> None:
    """Bytes Redis sends for one `lead_counts` stay the same at 0 and 2,000 parked leads of
    ~1 KB: a scan would send 2 MB."""

    def sent_for_status() -> int:
        before = int(redis_client.info("stats")["total_net_output_bytes"])
        counts = lead_counts(Account(settings, redis_client))
        after = int(redis_client.info("stats")["total_net_output_bytes"])
        parked = counts["parked_quota"] + counts["parked_reauth"] + counts["parked_token_key"]
        assert parked == redis_client.hlen(lot.keys.parked_index)
        return after - before

    empty = sent_for_status()
    for n in range(2000):
        park(lot, lead(n), REASONS[n % 3], resume_at=NOW + n)
    full = sent_for_status()
    assert full < empty + 1_000, (empty, full)
    counts = lot.counts()
    assert counts["by_reason"] == {REAUTH: 667, QUOTA: 667, TOKEN_KEY: 666}
    assert counts["next_resume_at"][QUOTA] == NOW + 1  # the first quota lead


def test_lost_sets_and_an_older_versions_single_set_are_recounted(
        lot: ParkingLot, redis_client: redis.Redis) -> None:
    for n in range(30):
        park(lot, lead(n), REASONS[n % 3])
    redis_client.delete(lot.due_keys[QUOTA])  # lost: a restore, a hand-typed DEL
    assert lot.counts()["by_reason"] == {REAUTH: 10, QUOTA: 10, TOKEN_KEY: 10}
    assert redis_client.zcard(lot.due_keys[QUOTA]) == 10
    # Written as the previous version did: one set for every reason, no kept message, and a
    # ledger entry that has since expired for some.
    old = [lead(n, "old") for n in range(12)]
    for n, item in enumerate(old):
        entry = {"lead": item.to_json_dict(), "reason": (QUOTA, REAUTH)[n % 2],
                 "resume_at": NOW - 5, "parked_at": NOW - 99, "attempts": 1}
        redis_client.hset(lot.keys.parked_index, item.lead_id, json.dumps(entry))
        redis_client.zadd(lot.keys.parked, {item.lead_id: NOW - 5})
        if n % 3:
            redis_client.hset(lot.keys.lead_outcome(item.lead_id), "state", "parked")
    assert lot.counts()["by_reason"] == {REAUTH: 10 + 6, QUOTA: 10 + 6, TOKEN_KEY: 10}
    assert not redis_client.exists(lot.keys.parked)
    # A member without an entry, an entry of a reason this version does not know, and a lost
    # lead: the sizes no longer add up (by one), so everything is recounted.
    redis_client.zadd(lot.due_keys[REAUTH], {"ghost": 1.0})
    unknown = {"lead": lead(99).to_json_dict(), "reason": "from_a_newer_version",
               "resume_at": NOW + 5, "parked_at": NOW, "attempts": 0}
    redis_client.hset(lot.keys.parked_index, lead(99).lead_id, json.dumps(unknown))
    redis_client.zrem(lot.due_keys[TOKEN_KEY], lead(2).lead_id)
    assert lot.counts()["by_reason"] == {REAUTH: 10 + 6 + 1, QUOTA: 10 + 6, TOKEN_KEY: 10}
    assert redis_client.zscore(lot.due_keys[REAUTH], "ghost") is None
    assert redis_client.zscore(lot.due_keys[TOKEN_KEY], lead(2).lead_id) == NOW - 10
    # The old leads resume with a message built from their entry, the rest with their own.
    assert lot.resume_due(sending_possible=True, now=NOW) == 30 + 12
    ids = queued_ids(redis_client)
    assert sorted(ids) == sorted({i.lead_id for i in old} | {lead(n).lead_id for n in range(30)})
    assert lot.counts()["by_reason"] == {REAUTH: 1, QUOTA: 0, TOKEN_KEY: 0}  # lead 99: later
    assert {lot.ledger.state(i.lead_id) for i in old} == {"queued"}


def test_errors_that_cancel_out_are_found_by_the_hourly_recount(
        lot: ParkingLot, redis_client: redis.Redis) -> None:
    for n in range(6):
        park(lot, lead(n), QUOTA)
    redis_client.zrem(lot.due_keys[QUOTA], lead(0).lead_id)  # an entry in no set ...
    redis_client.zadd(lot.due_keys[QUOTA], {"ghost": 1.0})  # ... and a member without one
    assert lot.counts()["by_reason"][QUOTA] == 6  # the sizes add up: not seen here
    assert lot.resume_due(sending_possible=True, now=NOW) == 6  # the first run looks at each
    assert sorted(queued_ids(redis_client)) == sorted(lead(n).lead_id for n in range(6))
    assert redis_client.ttl(lot.keys.parked_recounted) > 3000  # then not for an hour
    redis_client.zadd(lot.due_keys[QUOTA], {"ghost": 1.0})
    assert lot.resume_due(sending_possible=True, now=NOW) == 0
    assert lot.counts()["by_reason"][QUOTA] == 0  # 1 member, 0 entries: recounted


def test_a_parked_lead_keeps_its_message_without_a_ttl_and_resumes_with_it(
        lot: ParkingLot, redis_client: redis.Redis) -> None:
    items = [lead(n) for n in range(3)]
    messages = [park(lot, item, QUOTA) for item in items]
    for item in items:
        assert redis_client.ttl(lot.keys.lead_outcome(item.lead_id)) == -1
        assert redis_client.ttl(lot.keys.lead_message(item.lead_id)) == -1
    # The same move as the ledger's one-lead "resume", for comparison.
    single = lead(7)
    single_message = park(lot, single, QUOTA)
    assert lot.ledger.move(single.lead_id, "resume", now=NOW, message=single_message,
                           side=None)[0]
    redis_client.zrem(lot.due_keys[QUOTA], single.lead_id)
    redis_client.hdel(lot.keys.parked_index, single.lead_id)
    redis_client.delete(QUEUE)
    assert lot.resume_due(sending_possible=False, now=NOW) == 3
    assert sorted(m.decode() for m in redis_client.lrange(QUEUE, 0, -1)) == sorted(messages)
    expected = lot.ledger.get(single.lead_id)
    for item in items:
        assert lot.ledger.get(item.lead_id).keys() == expected.keys()
        assert lot.ledger.get(item.lead_id)["state"] == expected["state"] == "queued"
        assert lot.ledger.message(item.lead_id) in messages
        assert 0 < redis_client.ttl(lot.keys.lead_outcome(item.lead_id)) <= lot.ttl_s
    assert lot.resume_due(sending_possible=True, now=NOW) == 0  # nothing twice


def test_reauth_and_token_key_leads_wait_until_sending_is_possible(
        lot: ParkingLot, redis_client: redis.Redis) -> None:
    for n in range(9):
        park(lot, lead(n), REASONS[n % 3], resume_at=NOW - 1)
    park(lot, lead(50), QUOTA, resume_at=NOW + 60)
    assert lot.resume_due(sending_possible=False, now=NOW) == 3
    assert lot.counts()["by_reason"] == {REAUTH: 3, QUOTA: 1, TOKEN_KEY: 3}
    assert lot.resume_due(sending_possible=True, now=NOW) == 6
    assert lot.resume_due(sending_possible=True, now=NOW + 61) == 1
    assert len(set(queued_ids(redis_client))) == len(queued_ids(redis_client)) == 10


def test_each_message_goes_back_to_the_list_kombu_reads_for_its_priority(
        lot: ParkingLot, redis_client: redis.Redis, redis_url: str) -> None:
    given: dict[str, Any] = {str(p): p for p in range(10)}
    given.update({"neg": -4, "big": 42, "text": "7", "null": None, "junk": "high"})
    expected: dict[str, str] = {}
    with Connection(redis_url) as conn:
        channel: Any = conn.default_channel  # kombu's own Redis channel
        for name, priority in given.items():
            item = lead(len(expected), "pri")
            message = json.loads(encode_message(item, task_id=f"t-{name}"))
            message["properties"]["priority"] = priority
            park(lot, item, QUOTA, message=json.dumps(message))
            pri = channel._get_message_priority(message)
            expected[item.lead_id] = channel._q_for_pri(QUEUE, pri)
        assert set(expected.values()) == {QUEUE, *(QUEUE + channel.sep + s for s in "369")}
    assert lot.resume_due(sending_possible=True, now=NOW) == len(given)
    found = {}
    for key in priority_lists(QUEUE):
        for raw in redis_client.lrange(key, 0, -1):
            found[json.loads(json.loads(raw)["body"])[0][0]["lead_id"]] = key
    assert found == expected


def test_five_thousand_parked_leads_resume_each_exactly_once(
        settings: Settings, redis_url: str, lot: ParkingLot, redis_client: redis.Redis) -> None:
    total = 5000
    messages = {}
    for n in range(total):
        item = lead(n)
        messages[item.lead_id] = park(lot, item, (QUOTA, REAUTH)[n % 2])
    resumed: list[int] = []

    def resume() -> None:  # two beat runs overlapping (a slow one and the next)
        mine = Account(settings, redis.Redis.from_url(redis_url)).parking
        resumed.append(mine.resume_due(sending_possible=True, now=NOW, batch=250))

    threads = [threading.Thread(target=resume) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sum(resumed) == total
    raws = queued(redis_client)
    assert len(raws) == total
    by_id = {json.loads(json.loads(raw)["body"])[0][0]["lead_id"]: raw.decode() for raw in raws}
    assert by_id == messages  # each once, the message kept when it was taken, unchanged
    assert lot.counts()["by_reason"] == dict.fromkeys(REASONS, 0)
    assert redis_client.hlen(lot.keys.parked_index) == 0
    states = Counter(lot.ledger.state(i) for i in list(messages)[::50])
    assert states == {"queued": total // 50}
