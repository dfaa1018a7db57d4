"""Issue 9, done when 4: 5,000 seeded random mutations of a valid message (truncations, byte
flips, nesting to 100,000 levels, type swaps, 5 MB entries; tests/fixtures/mutations.py) mixed
with 100 good leads, pushed by a bare Redis client while a real worker runs. The worker and its
pool stay as they were; every mutant is found again: kept with a reason, or delivered exactly
once because the mutation happened to leave it a valid lead. A failure names its seed; rerun
with LEADSYNC_FUZZ_SEED=<seed>."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections import Counter
from collections.abc import Callable

import pytest
import redis

from tests.fixtures.delivery import Fleet
from tests.fixtures.fleet import (
    alive,
    answers_ping,
    dead_letter_texts,
    lead_unacked,
    people,
    wait_until_kept,
)
from tests.fixtures.mutations import FUZZ_KIND, mutants
from tests.fixtures.ops import leadsync_bin
from worker.base.keys import Keys
from worker.base.names import LEADS_QUEUE
from worker.base.priority import queued
from worker.leads.lead import parse_lead
from worker.leads.wire import encode_message

pytestmark = [pytest.mark.redis, pytest.mark.slow]

MARKER = re.compile(r"mk(\d\d)n(\d{5})x")

FUZZ_SEED = int(os.environ.get("LEADSYNC_FUZZ_SEED", "20261130"))  # a failure names its seed
FUZZ_GOOD = 100


def test_five_thousand_random_mutations_never_kill_the_worker(
    fleet: Callable[..., Fleet], redis_client: redis.Redis
) -> None:
    """Issue 9: truncations, byte flips, nesting to 100,000 levels, type swaps and 5 MB bodies
    of a valid message, mixed with good leads. Each mutant is found again: kept with a reason,
    or delivered once because the mutation happened to leave it a valid lead."""
    run = fleet()
    worker = run.start_worker("z1", concurrency=2)
    run.wait_ready("z1")
    pids_at_start = run.worker_pids("z1")
    started = time.monotonic()
    bad = mutants(FUZZ_SEED)
    generated_s = time.monotonic() - started
    good = [parse_lead(data) for data in people(FUZZ_GOOD, tag="fuzzgood")]
    every = len(bad) // FUZZ_GOOD
    pipe = redis_client.pipeline(transaction=False)
    for index, mutant in enumerate(bad):
        if index % every == 0:
            pipe.lpush(LEADS_QUEUE, encode_message(good[index // every]))
        pipe.lpush(LEADS_QUEUE, mutant.raw)
        if index % 200 == 199:
            pipe.execute()
    pipe.execute()
    pushed_s = time.monotonic() - started

    run.wait_settled([lead.lead_id for lead in good], 300)
    keys = Keys()
    kept = wait_until_kept(redis_client, keys, len(bad), 300, worker)
    drained_s = time.monotonic() - started

    texts = dead_letter_texts(redis_client, keys)
    found = Counter(n for text in texts for k, n in MARKER.findall(text) if int(k) == FUZZ_KIND)
    contacts = run.stack.sandbox.contacts()
    delivered = Counter(n for contact in contacts
                        for k, n in MARKER.findall(str(contact.get("first_name")))
                        if int(k) == FUZZ_KIND)
    lost = [m for m in bad if f"{m.n:05d}" not in found and f"{m.n:05d}" not in delivered]
    twice = [m for m in bad if delivered[f"{m.n:05d}"] > 1
             or (f"{m.n:05d}" in delivered and f"{m.n:05d}" in found)]
    by_kind = Counter(m.kind for m in bad)
    still_valid = Counter(m.kind for m in bad if f"{m.n:05d}" in delivered)
    print(f"\nFUZZ seed={FUZZ_SEED} mutants={len(bad)} {dict(by_kind)} good={FUZZ_GOOD} "
          f"bytes={sum(len(m.raw) for m in bad) / 1e6:.0f} MB; generated in {generated_s:.1f} s, "
          f"pushed by {pushed_s:.1f} s, all settled by {drained_s:.1f} s; kept={kept} "
          f"(malformed {redis_client.llen(keys.malformed)}, dead letters "
          f"{redis_client.hlen(keys.dead_letters)}); still valid, delivered={dict(still_valid)}; "
          f"lost={[(m.n, m.kind) for m in lost][:10]}")
    assert not lost, f"{len(lost)} mutants kept nowhere (seed {FUZZ_SEED})"
    assert not twice, f"kept or delivered twice: {[(m.n, m.kind) for m in twice][:10]}"
    # Mutations that can never leave a valid lead never reach Constant Contact.
    assert not {"truncate", "big"} & set(still_valid)

    assert queued(redis_client, LEADS_QUEUE) == 0 and lead_unacked(redis_client) == 0
    assert worker.poll() is None, "the worker died"
    assert alive(pids_at_start) == pids_at_start, "a pool process died"
    assert run.worker_pids("z1") == pids_at_start, "the pool was restarted"
    assert answers_ping(run, "z1"), "the worker no longer answers a ping"

    listing = subprocess.run([leadsync_bin("leadsync"), "dlq", "list", "--json",
                              "--limit", "0"],  # every letter, not the first page
                             env=run.env, capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0, listing.stderr
    letters = [json.loads(line) for line in listing.stdout.splitlines()]
    assert len(letters) == kept and all(letter["reason"] for letter in letters)
    print(f"FUZZ reasons={Counter(letter['reason'][:40] for letter in letters).most_common(12)}")
    good_emails = {lead.email for lead in good}
    assert Counter(c["email_address"]["address"] for c in contacts
                   if c["email_address"]["address"] in good_emails) == Counter(good_emails)
