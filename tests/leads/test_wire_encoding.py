"""The fast paths of producing stay exact: one-pass encoding, order, stamping before validation."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.fixtures.leads import pop_entry
from tests.leads.test_lead_corpus import CASES
from worker.base.errors import RedisUnavailableError
from worker.base.names import LEADS_QUEUE
from worker.base.priority import queued
from worker.leads.enqueue import enqueue_leads, prepare
from worker.leads.lead import parse_lead
from worker.leads.push import BatchPusher
from worker.leads.wire import (
    _lead_argsrepr,
    _two_uuid4,
    build_message,
    encode_message,
    parse_message,
    random_id_pairs,
    redacted_argsrepr,
)

AWKWARD = {"email": "zoe@example.com", "first_name": 'Zoé "Q" \\ 😀 </script>\n',
           "custom_fields": {"ünï": "ß\t"}, "received_at": "2026-01-01T00:00:00+02:00",
           "address": {"city": "Köln"}, "list_ids": ["6f1b9a52-7c3e-4a2b-9f0e-1c2d3e4f5a6b"]}


def test_the_encoded_message_is_build_messages_dict() -> None:
    lead = parse_lead(AWKWARD)
    encoded = json.loads(encode_message(lead, task_id="t-1"))
    expected = build_message(lead, task_id="t-1")
    assert json.loads(encoded.pop("body")) == json.loads(expected.pop("body"))
    assert encoded["properties"].pop("delivery_tag") != expected["properties"].pop("delivery_tag")
    assert encoded == expected
    assert parse_message(encode_message(lead)) == lead
    assert encode_message(lead).isascii()  # as json.dumps wrote it: any client can push it


def test_enqueued_leads_are_read_in_the_order_given_consented_ones_first(
        redis_client: redis.Redis) -> None:
    rows = [{"email": f"n{n}@example.com", "consent": n % 5 == 0} for n in range(2_500)]
    report = enqueue_leads(rows, redis=redis_client, batch_size=1_000)
    popped = [parse_message(pop_entry(redis_client)).email  # type: ignore[arg-type]
              for _ in range(2_500)]
    assert popped == ([row["email"] for row in rows if row["consent"]]
                      + [row["email"] for row in rows if not row["consent"]])
    assert report.lead_ids == [parse_lead(row).lead_id for row in rows]


def test_stamping_received_at_before_validation_keeps_the_lead_id() -> None:
    now = datetime(2026, 11, 30, 1, 2, 3, tzinfo=UTC)
    given = {"email": "ada@engines.example", "first_name": "Ada"}
    stamped = prepare(given, now=now)
    assert stamped.received_at == now
    assert stamped.lead_id == parse_lead(given).lead_id
    assert "received_at" not in given  # the caller's dict is left alone
    assert prepare({**given, "received_at": None}, now=now).received_at == now


def test_the_fast_random_ids_are_version_4_uuids(monkeypatch: pytest.MonkeyPatch) -> None:
    for raw in (bytes(32), b"\xff" * 32, *(os.urandom(32) for _ in range(300))):
        monkeypatch.setattr(os, "urandom", lambda size, raw=raw: raw[:size])
        assert _two_uuid4() == (str(uuid.UUID(bytes=raw[:16], version=4)),
                                str(uuid.UUID(bytes=raw[16:], version=4)))
    monkeypatch.undo()
    seen: set[str] = set()
    for _ in range(200):
        task_id, tag = _two_uuid4()
        for text in (task_id, tag):
            parsed = uuid.UUID(text)
            assert str(parsed) == text and parsed.version == 4
            assert parsed.variant == uuid.RFC_4122
        seen.update((task_id, tag))
    assert len(seen) == 400  # random, and the two of one message differ


def test_the_argsrepr_of_one_lead_is_the_generic_one() -> None:
    for case in CASES:
        if "lead_id" in case["outcome"]:
            lead = parse_lead(case["input"])
            assert _lead_argsrepr(lead) == redacted_argsrepr([lead])


def test_every_corpus_lead_encodes_to_build_messages_dict() -> None:
    leads = [parse_lead(case["input"]) for case in CASES if "lead_id" in case["outcome"]]
    assert len(leads) > 300
    for lead in leads:
        encoded = json.loads(encode_message(lead, task_id="t-2"))
        expected = build_message(lead, task_id="t-2")
        assert json.loads(encoded.pop("body")) == json.loads(expected.pop("body"))
        uuid.UUID(encoded["properties"].pop("delivery_tag"))
        expected["properties"].pop("delivery_tag")
        assert encoded == expected
        plain = json.loads(encode_message(lead))
        assert plain["headers"]["id"] == plain["headers"]["root_id"] == plain["properties"][
            "correlation_id"]
        assert uuid.UUID(plain["headers"]["id"]).version == 4


def test_a_batch_of_ids_is_version_4_uuids_from_one_read(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = os.urandom(32 * 5)
    reads: list[int] = []
    monkeypatch.setattr(os, "urandom", lambda size: reads.append(size) or raw[:size])
    assert random_id_pairs(5) == [(str(uuid.UUID(bytes=raw[at:at + 16], version=4)),
                                   str(uuid.UUID(bytes=raw[at + 16:at + 32], version=4)))
                                  for at in range(0, 160, 32)]
    assert reads == [160]
    monkeypatch.undo()
    ids = [text for pair in random_id_pairs(1_000) for text in pair]
    assert len(set(ids)) == 2_000


def test_the_batch_pusher_is_lpush_and_gives_its_connection_back(redis_url: str) -> None:
    """One pooled connection only: a later call works only if the one before released it."""
    pool = redis.BlockingConnectionPool.from_url(redis_url, max_connections=1, timeout=2)
    client = redis.Redis(connection_pool=pool)
    values = [f"m{n}:" + "x" * 900 for n in range(300)]  # ~270 kB: many 6 kB pieces in redis-py
    try:
        with BatchPusher(client, "at-once") as pusher:
            assert pusher.answer() is None
            pusher.send(values)
            with pytest.raises(RuntimeError):
                pusher.send(values)  # one batch unanswered at most
            assert pusher.answer() == 300
            pusher.send(["last"])
            assert pusher.answer() == 301
        client.lpush("one-by-one", *values, "last")
        assert client.lrange("at-once", 0, -1) == client.lrange("one-by-one", 0, -1)
        client.set("a-string", "x")
        with BatchPusher(client, "a-string") as pusher:
            pusher.send(["m"])
            with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
                pusher.answer()
        with BatchPusher(client, "at-once") as pusher:
            pusher.send(["never answered"])  # closed with its reply unread: not reused as is
        assert client.lindex("at-once", 0) == b"never answered"
    finally:
        client.close()
        pool.disconnect()


def test_a_connection_lost_mid_run_reports_exactly_what_is_queued(redis_url: str) -> None:
    """The reply to a batch is read late, yet the count in the error is what Redis holds."""
    client = redis.Redis.from_url(redis_url, retry=Retry(NoBackoff(), 0))
    watcher = redis.Redis.from_url(redis_url)
    rows = [{"email": f"n{n}@example.com"} for n in range(3_500)]

    def cut_the_connection(report: object) -> None:
        watcher.client_kill_filter(_type="normal", skipme=True)

    try:
        with pytest.raises(RedisUnavailableError) as caught:
            enqueue_leads(rows, redis=client, progress=cut_the_connection)
        assert "; 1000 lead(s) were enqueued before the failure" in str(caught.value)
        assert queued(watcher, LEADS_QUEUE) == 1_000  # on the no-consent list
    finally:
        client.close()
        watcher.close()
