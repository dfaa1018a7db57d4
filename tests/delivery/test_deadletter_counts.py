"""Dead-letter counters and pages on a real Redis: the counters stay exact through add, overwrite,
replay and purge (they change in the same script as the letters), letters from before the
counters are counted once, `dlq list` pages oldest first with the total, and `status` reads
the counters instead of every letter (measured in bytes Redis sends, not in seconds)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from typing import Any

import pytest
import redis

from worker.account import Account
from worker.base.keys import Keys
from worker.base.settings import Settings
from worker.broker.guard import record_malformed
from worker.cli import main
from worker.leads.lead import parse_lead
from worker.ledger.deadletter import MALFORMED, DeadLetter, DeadLetters
from worker.report.stats import lead_counts

pytestmark = pytest.mark.redis
REASONS = ("http_400", "invalid_lead", "retries_exhausted")


def letter(n: int, *, reason: str | None = None, dead_at: float | None = None) -> DeadLetter:
    lead = parse_lead({"email": f"p{n}@count.example", "first_name": "x" * 40})
    return DeadLetter(lead.lead_id, f"why {n}", reason or REASONS[n % len(REASONS)], 1, 400,
                      dead_at or time.time(), dead_at or time.time(), lead.to_json_dict())


def recount(client: redis.Redis, keys: Keys) -> dict[str, int]:
    """The counts the slow way: every letter decoded."""
    codes = Counter(json.loads(raw)["reason_code"] for raw in client.hvals(keys.dead_letters))
    malformed = int(client.llen(keys.malformed))
    return {**dict(codes), **({MALFORMED: malformed} if malformed else {})}


def counters(client: redis.Redis, keys: Keys) -> dict[str, int]:
    """The stored counters as they are (no repair), with the malformed list's length."""
    stored = {k.decode(): int(v) for k, v in client.hgetall(keys.dead_letter_counts).items()}
    malformed = int(client.llen(keys.malformed))
    return {**stored, **({MALFORMED: malformed} if malformed else {})}


@pytest.fixture
def store(make_settings: Any, redis_url: str, redis_client: redis.Redis) -> DeadLetters:
    return Account(make_settings(redis_url=redis_url), redis_client).dead_letters


def test_counters_stay_exact_through_add_overwrite_replay_and_purge(
        store: DeadLetters, redis_client: redis.Redis) -> None:
    for n in range(30):
        store.add(letter(n))
    # The same lead dead again, for another reason: settled, so refused and not counted.
    assert store.add(letter(3, reason="http_404"))[0] is False
    record_malformed(redis_client, store.keys, b"not json", "list entry is not JSON")
    assert counters(redis_client, store.keys) == recount(redis_client, store.keys)
    assert store.counts_by_reason() == {"http_400": 10, "invalid_lead": 10,
                                        "retries_exhausted": 10, MALFORMED: 1}
    store.replay(letter(1).lead_id)
    assert store.purge([store.get(letter(n).lead_id) for n in (2, 5, 8)]) == 3
    assert store.purge([letter(2)]) == 0  # already gone: nothing counted twice
    assert counters(redis_client, store.keys) == recount(redis_client, store.keys)
    assert store.counts_by_reason()["retries_exhausted"] == 7
    assert store.counts_by_reason()["invalid_lead"] == 9
    for n in range(30):  # empty again: no counter left behind
        if n not in (1, 2, 5, 8):
            store.purge([letter(n)])
    assert store.counts_by_reason() == {MALFORMED: 1}
    assert not redis_client.exists(store.keys.dead_letter_counts)


def test_letters_from_before_the_counters_are_counted_once(
        store: DeadLetters, redis_client: redis.Redis) -> None:
    for n in range(12):  # written the way the previous version did: no counters
        old = letter(n)
        redis_client.hset(store.keys.dead_letters, old.lead_id, old.to_json())
        redis_client.zadd(store.keys.dead_letter_index, {old.lead_id: old.dead_at})
    assert store.counts_by_reason() == {"http_400": 4, "invalid_lead": 4, "retries_exhausted": 4}
    store.add(letter(100, reason="http_404"))
    store.purge([letter(0)])
    assert store.counts_by_reason() == recount(redis_client, store.keys)
    assert sum(store.counts_by_reason().values()) == 12


def test_pages_are_oldest_first_with_malformed_entries_in_time_order(
        store: DeadLetters, redis_client: redis.Redis) -> None:
    now = time.time()
    for n in range(1200):  # more than one chunk of the index
        store.add(letter(n, dead_at=now - 5000 + n))
    entry = {"reason": "list entry is not JSON", "at": now - 5000 + 10.5, "raw": "junk"}
    redis_client.rpush(store.keys.malformed, json.dumps(entry))
    first = store.page(limit=20, now=now)
    assert first.total == 1201
    assert [x.dead_at for x in first.letters] == sorted(x.dead_at for x in first.letters)
    assert first.letters[11].reason_code == MALFORMED  # between the 11th and 12th letters
    later = store.page(offset=1100, limit=200, now=now)
    assert len(later.letters) == 101 and later.letters[-1].lead_id == letter(1199).lead_id
    only = store.page(reason="invalid_lead", offset=390, limit=50, now=now)
    assert only.total == 400 and len(only.letters) == 10
    assert {x.reason_code for x in only.letters} == {"invalid_lead"}
    aged = store.page(older_than_s=4000, now=now, limit=None)  # dead 4000 s ago or more
    assert len(aged.letters) == 1001 + 1 and aged.total is None  # malformed needs a scan
    assert store.select(reason=MALFORMED)[0].reason == "list entry is not JSON"


def test_dlq_list_shows_a_page_and_says_how_to_get_the_next(
        store: DeadLetters, monkeypatch: pytest.MonkeyPatch, redis_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LEADSYNC_REDIS_URL", redis_url)
    now = time.time()
    for n in range(150):
        store.add(letter(n, dead_at=now - 1000 + n))
    assert main(["dlq", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 + 100 + 1
    assert out[-1] == "100 of 150 dead letter(s); next: --offset 100"
    assert main(["dlq", "list", "--offset", "100", "--limit", "0"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "101-150 of 150 dead letter(s)"
    assert out[-2].startswith(letter(149).lead_id)
    assert main(["dlq", "list", "--reason", "http_400", "--newer-than", "1h", "--limit", "10"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "10 dead letter(s) shown; more may match: --offset 10")


def test_status_reads_counters_not_every_letter(
        make_settings: Any, redis_url: str, redis_client: redis.Redis) -> None:
    """Bytes Redis sends for one `lead_counts` stay the same at 0 and 3,000 letters of ~1 KB:
    a scan would send 3 MB."""
    settings: Settings = make_settings(redis_url=redis_url)
    store = Account(settings, redis_client).dead_letters

    def sent_for_status() -> int:
        before = int(redis_client.info("stats")["total_net_output_bytes"])
        counts = lead_counts(Account(settings, redis_client))
        after = int(redis_client.info("stats")["total_net_output_bytes"])
        assert counts["dead_letters"] == len(redis_client.hkeys(store.keys.dead_letters))
        return after - before

    empty = sent_for_status()
    pipe = redis_client.pipeline(transaction=False)
    for n in range(3000):
        padded = dataclasses.replace(letter(n), reason="r" * 900)
        store._script(keys=store._script_keys, client=pipe, args=[
            "put", padded.lead_id, padded.to_json(), padded.reason_code, padded.dead_at])
    pipe.execute()
    full = sent_for_status()
    assert full < empty + 2_000, (empty, full)
