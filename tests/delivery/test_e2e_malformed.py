"""Issue 4, done when 7: 10,000 malformed messages mixed with good leads, pushed by a bare Redis
client onto `leads` while a real worker runs. The worker neither dies nor loses a pool process,
still answers, every malformed message is kept with a reason (dead letters or the malformed list,
accounted kind by kind through a marker each one carries), and the good leads all arrive once."""

from __future__ import annotations

import json
import random
import re
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import redis

from tests.fixtures.delivery import Fleet
from tests.fixtures.fleet import alive, answers_ping, dead_letter_texts, people, wait_until_kept
from tests.fixtures.ops import leadsync_bin
from worker.base.keys import Keys
from worker.base.names import LEADS_QUEUE, SYNC_LEAD
from worker.leads.lead import parse_lead
from worker.leads.wire import EMBED, encode_message

pytestmark = [pytest.mark.redis, pytest.mark.slow]

MALFORMED = 10_000
GOOD = 50
OVERSIZE = 10  # of each oversize kind: 2 MB entries are costly to keep
MARKER = re.compile(r"mk(\d\d)n(\d{5})x")
PER_CELERY_KIND = 20


def marker(kind: int, n: int) -> str:
    return f"mk{kind:02d}n{n:05d}x"


def envelope(body: str, m: str, *, task: str | None = SYNC_LEAD,
             content_type: str = "application/json", **properties: Any) -> str:
    """A message envelope like worker.leads.wire builds, with its parts open to breaking."""
    headers: dict[str, Any] = {"lang": "py", "id": m, "retries": 0, "root_id": m,
                               "parent_id": None, "argsrepr": "()", "kwargsrepr": "{}"}
    if task is not None:
        headers["task"] = task
    return json.dumps({
        "body": body, "content-type": content_type, "content-encoding": "utf-8",
        "headers": headers,
        "properties": {"delivery_tag": m, "correlation_id": m, "delivery_mode": 2,
                       "priority": 0, "delivery_info": {"exchange": "", "routing_key": LEADS_QUEUE},
                       **properties}})


def task(args: list[Any], kwargs: dict[str, Any], m: str) -> str:
    return envelope(json.dumps([args, kwargs, EMBED]), m)


# One builder per kind: marker -> the raw list entry. The marker lands in whatever the worker
# keeps of the message (the entry, its body, or the lead), so each one can be found again.
KINDS: list[tuple[str, Callable[[str], str | bytes]]] = [
    # Not a message envelope at all (the guarded channel sets these aside).
    ("not_json", lambda m: f"not json at all {m}"),
    ("json_string", lambda m: json.dumps(m)),
    ("json_array", lambda m: json.dumps([m, 1, None])),
    ("no_properties", lambda m: json.dumps({"body": "x", "headers": {"id": m}})),
    ("no_delivery_info", lambda m: json.dumps({"body": "x", "headers": {},
                                                "properties": {"delivery_tag": m}})),
    ("headers_not_object", lambda m: json.dumps({
        "body": "x", "headers": [m],
        "properties": {"delivery_tag": m, "delivery_info": {}}})),
    ("not_utf8", lambda m: b"\xff\xfe\xfa{" + m.encode()),
    # An envelope whose body is not [args, kwargs, embed].
    ("body_not_json", lambda m: envelope("{not json " + m, m)),
    ("body_not_triple", lambda m: envelope(json.dumps({"not": "a body", "m": m}), m)),
    # The task's arguments are not one lead.
    ("missing_email", lambda m: task([{"first_name": m}], {}, m)),
    ("bad_email", lambda m: task([{"email": f"{m}-not-an-email"}], {}, m)),
    ("email_wrong_type", lambda m: task([{"email": 42, "source": m}], {}, m)),
    ("consent_wrong_type", lambda m: task([{"email": "c@x.example", "consent": "yes",
                                            "source": m}], {}, m)),
    ("email_too_long", lambda m: task([{"email": "z" * 60 + "@y.example", "source": m}],
                                      {}, m)),
    ("unknown_field", lambda m: task([{"email": "u@x.example", "favourite": m}], {}, m)),
    ("extra_argument", lambda m: task([{"email": "x@y.example", "source": m}, "extra"], {}, m)),
    ("kwargs_only", lambda m: task([], {"lead": {"email": "x@y.example", "source": m}}, m)),
    ("unknown_kwarg", lambda m: task([{"email": "x@y.example"}], {"priority": m}, m)),
    ("string_argument", lambda m: task([m], {}, m)),
    ("array_argument", lambda m: task([[m]], {}, m)),
    # Oversize: a 2 MB entry that is not JSON, and a lead whose email is 1.5 MB.
    ("oversize_entry", lambda m: m + "x" * 2_000_000),
    ("oversize_lead", lambda m: task([{"email": "o" * 1_500_000 + "@y.example", "source": m}],
                                     {}, m)),
]
OVERSIZE_KINDS = {"oversize_entry", "oversize_lead"}


def malformed_entries() -> list[tuple[int, int, str | bytes]]:
    """(kind, n, entry) for MALFORMED entries, kinds interleaved."""
    small = [k for k, (name, _) in enumerate(KINDS) if name not in OVERSIZE_KINDS]
    big = [k for k, (name, _) in enumerate(KINDS) if name in OVERSIZE_KINDS]
    plan = [k for k in big for _ in range(OVERSIZE)]
    plan += [small[i % len(small)] for i in range(MALFORMED - len(plan))]
    random.Random(4).shuffle(plan)  # kinds mixed over the run, the same way every time
    return [(k, n, KINDS[k][1](marker(k, n))) for n, k in enumerate(plan)]


def missing_by_kind(client: redis.Redis, keys: Keys,
                    entries: list[tuple[int, int, str | bytes]],
                    kinds: list[tuple[str, Callable[[str], str | bytes]]]) -> Counter[str]:
    found = {(int(k), int(n)) for text in dead_letter_texts(client, keys)
             for k, n in MARKER.findall(text)}
    return Counter(kinds[k][0] for k, n, _ in entries if (k, n) not in found)


def test_ten_thousand_malformed_messages_mixed_with_good_leads(
    fleet: Callable[..., Fleet], redis_client: redis.Redis
) -> None:
    run = fleet()
    worker = run.start_worker("m1", concurrency=4)
    run.wait_ready("m1")
    pids_at_start = run.worker_pids("m1")

    entries = malformed_entries()
    good = [parse_lead(data) for data in people(GOOD, tag="good")]
    every = len(entries) // GOOD
    started = time.monotonic()
    pipe = redis_client.pipeline(transaction=False)
    for index, (_kind, _n, entry) in enumerate(entries):
        if index % every == 0 and index // every < GOOD:
            pipe.lpush(LEADS_QUEUE, encode_message(good[index // every]))
        pipe.lpush(LEADS_QUEUE, entry)
        if index % 500 == 499:
            pipe.execute()
    pipe.execute()

    run.wait_settled([lead.lead_id for lead in good], 300)
    keys = Keys()
    kept = wait_until_kept(redis_client, keys, MALFORMED, 300, worker)
    elapsed = time.monotonic() - started
    missing = missing_by_kind(redis_client, keys, entries, KINDS)
    print(f"\nMALFORMED pushed={len(entries)} good={GOOD} kinds={len(KINDS)} kept={kept} "
          f"in {elapsed:.1f} s; missing_by_kind={dict(missing)}")
    assert not missing, f"malformed messages lost, by kind: {dict(missing)}"

    # The worker is the same process, lost no pool process, and still answers.
    assert worker.poll() is None, "the worker died"
    assert alive(pids_at_start) == pids_at_start, "a pool process died"
    assert run.worker_pids("m1") == pids_at_start, "the pool was restarted"
    assert answers_ping(run, "m1"), "the worker no longer answers a ping"

    # Every one kept has a reason, as an operator sees them.
    listing = subprocess.run([leadsync_bin("leadsync"), "dlq", "list", "--json", "--limit", "0"],
                             env=run.env, capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0, listing.stderr
    letters = [json.loads(line) for line in listing.stdout.splitlines()]
    assert len(letters) == kept
    assert all(letter["reason"] and letter["reason_code"] for letter in letters)
    by_reason = Counter(letter["reason_code"] for letter in letters)
    print(f"MALFORMED by_reason={dict(by_reason)}")
    assert set(by_reason) <= {"malformed", "invalid_lead"}

    stats = run.stack.sandbox.stats()
    assert stats["contacts"]["count"] == GOOD
    assert stats["contacts"]["created"] == GOOD


# Producer mistakes Celery itself handles before any leadsync code runs.
CELERY_LEVEL_KINDS: list[tuple[str, Callable[[str], str | bytes]]] = [
    ("body_not_json", lambda m: envelope("{not json " + m, m)),
    ("unknown_task_name", lambda m: envelope(
        json.dumps([[{"email": "t@x.example", "source": m}], {}, EMBED]), m,
        task="leadsync.no_such_task")),
    ("no_task_header", lambda m: envelope(
        json.dumps([[{"email": "h@x.example", "source": m}], {}, EMBED]), m, task=None)),
    ("pickle_content_type", lambda m: envelope(m, m,
                                               content_type="application/x-python-serialize")),
    ("base64_garbage", lambda m: envelope("!!" + m, m, body_encoding="base64")),
    ("unknown_body_encoding", lambda m: envelope(m, m, body_encoding="rot13")),
    ("body_not_a_string", lambda m: json.dumps({
        "body": {"m": m}, "content-type": "application/json", "headers": {"id": m},
        "properties": {"delivery_tag": m,
                       "delivery_info": {"exchange": "", "routing_key": LEADS_QUEUE}}})),
    ("delivery_info_without_exchange", lambda m: json.dumps({
        "body": json.dumps([[{"email": "d@x.example", "source": m}], {}, EMBED]),
        "content-type": "application/json", "content-encoding": "utf-8",
        "headers": {"id": m, "task": SYNC_LEAD},
        "properties": {"delivery_tag": m, "delivery_info": {"routing_key": LEADS_QUEUE}}})),
]


# Unguarded, Celery 5.7 / kombu 5.7 would log and drop the first six of these, and stop the
# worker ("Unrecoverable error") on the two broken body encodings; worker/broker/guard.py keeps
# them all.
@pytest.mark.parametrize("kind", [name for name, _build in CELERY_LEVEL_KINDS])
def test_messages_celery_cannot_route_or_decode_are_kept_too(
    fleet: Callable[..., Fleet], redis_client: redis.Redis, kind: str
) -> None:
    run = fleet()
    worker = run.start_worker("c1", concurrency=2)
    run.wait_ready("c1")
    k, build = next((k, build) for k, (name, build) in enumerate(CELERY_LEVEL_KINDS)
                    if name == kind)
    entries = [(k, n, build(marker(k, n))) for n in range(PER_CELERY_KIND)]
    redis_client.lpush(LEADS_QUEUE, *[entry for _k, _n, entry in entries])
    keys = Keys()
    kept = wait_until_kept(redis_client, keys, len(entries), 60, worker)
    missing = missing_by_kind(redis_client, keys, entries, CELERY_LEVEL_KINDS)
    print(f"\nCELERY-LEVEL {kind}: pushed={len(entries)} kept={kept} missing={missing[kind]}")
    assert worker.poll() is None, "the worker died"
    assert answers_ping(run, "c1")
    assert not missing, f"kept nowhere: {missing[kind]} of {len(entries)}"

