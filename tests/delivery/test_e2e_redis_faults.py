"""Issue 9, zero loss: Redis stopped mid-task, killed -9 and away for a while, with real
`celery worker` and `celery beat` processes, a Redis with AOF (`appendfsync everysec`) on its
own dir, and the sandbox. Every lead ends a contact exactly once; nothing is left in flight,
queued, scheduled or unacknowledged; worker and beat reconnect by themselves.

No path acknowledges a message without its outcome: a task that cannot record one within
LEADSYNC_OUTCOME_WAIT_S raises Reject(requeue=True), which kombu either performs atomically or,
with Redis away, not at all, leaving the message in `unacked` for the sweep. No beat runs in the
first test, so only kombu's own restore can bring a handed-back message back.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.fixtures.crash_redis import CrashableRedis
from tests.fixtures.delivery import Fleet
from tests.fixtures.fleet import answers_ping, people
from tests.fixtures.ops import wait_for
from worker.account import Account
from worker.base.keys import Keys
from worker.base.names import LEADS_QUEUE
from worker.base.priority import queued
from worker.ledger.delivered import counts as delivered_counts
from worker.ledger.lead_state import LeadState

pytestmark = [pytest.mark.redis, pytest.mark.slow]

UNACKED = "unacked"
FAULTY = {
    "LEADSYNC_VISIBILITY_TIMEOUT_S": "5",  # handed-back messages return soon after Redis does
    "LEADSYNC_OUTCOME_WAIT_S": "6",
    "LEADSYNC_RECONCILE_INTERVAL_S": "2",
    "LEADSYNC_BACKOFF_MAX_S": "2",
    "LEADSYNC_HTTP_TIMEOUT_S": "3",
}


@pytest.fixture
def crash_redis(tmp_path: Path) -> Iterator[CrashableRedis]:
    server = CrashableRedis(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(crash_redis: CrashableRedis) -> str:
    """Every fixture of this module (delivery_stack, fleet, redis_client) uses this server."""
    return crash_redis.url


def tolerant(read: Callable[[], Any]) -> Any:
    """`read()`, or None while Redis is away (the test polls through the faults)."""
    try:
        return read()
    except redis.RedisError:
        return None


def leftovers(client: redis.Redis, keys: Keys) -> dict[str, int]:
    return {"queued": queued(client, LEADS_QUEUE), "unacked": int(client.hlen(UNACKED)),
            "scheduled": int(client.zcard(keys.schedule)),
            "in_flight": int(client.zcard(keys.lead_state_index(LeadState.IN_FLIGHT))),
            "retrying": int(client.zcard(keys.lead_state_index(LeadState.RETRYING)))}


def settle(run: Fleet, client: redis.Redis, lead_ids: list[str], timeout_s: float) -> None:
    ledger = Account(run.stack.settings, client).ledger
    keys = Keys()

    def done() -> bool:
        pipe = client.pipeline(transaction=False)
        for lead_id in lead_ids:
            pipe.hget(ledger.keys.lead_outcome(lead_id), "state")
        states = pipe.execute()
        return (all(s == b"delivered" for s in states)
                and not any(leftovers(client, keys).values()))

    try:
        wait_for(lambda: tolerant(done), timeout_s, "every lead delivered, nothing left over")
    except AssertionError:
        states = Counter(tolerant(lambda: [ledger.state(i) for i in lead_ids]) or [])
        raise AssertionError(f"not settled: {dict(states)}, left over "
                             f"{tolerant(lambda: leftovers(client, keys))}") from None


def reconnected(run: Fleet, name: str) -> None:
    """The worker answers a ping again (this process's own stale broker sockets may fail the
    first tries: each try is a new app and connection). Celery's reconnect waits grow after a
    long outage, hence the minute."""
    try:
        wait_for(lambda: tolerant(lambda: answers_ping(run, name)), 60,
                 f"{name} to answer a ping after Redis came back")
    except AssertionError as exc:
        log = (run.spawned.tmp_path / f"{name}.log").read_text(errors="replace")
        raise AssertionError(f"{exc}; its log ends:\n{log[-3000:]}") from None


def delivered(client: redis.Redis) -> int | None:
    """Leads delivered so far (the per-minute counts `status` reads), None while Redis is away."""
    return tolerant(lambda: delivered_counts(client, Keys()).total)


def last_reconcile_sent(run: Fleet) -> float:
    """When beat last sent `leadsync.reconcile` (from its log), 0 if never."""
    text = (run.spawned.tmp_path / "beat.log").read_text(errors="replace")
    stamps = [line[:23] for line in text.splitlines()
              if "Sending due task leadsync-reconcile" in line]
    if not stamps:
        return 0.0
    return datetime.strptime(stamps[-1], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def one_contact_each(run: Fleet, emails: list[str]) -> Counter[str]:
    seen = Counter(c["email_address"]["address"] for c in run.stack.sandbox.contacts())
    assert {email: seen[email] for email in emails} == dict.fromkeys(emails, 1)
    return seen


@pytest.mark.parametrize("outage_s", [2.0, 12.0], ids=["within-wait", "beyond-wait"])
def test_redis_stopped_mid_task_loses_nothing(
    fleet: Callable[..., Fleet], crash_redis: CrashableRedis, redis_client: redis.Redis,
    outage_s: float,
) -> None:
    run = fleet(latency_ms=1500, settings_env=FAULTY)
    run.start_worker("m1", concurrency=1)
    run.wait_ready("m1")
    [lead_id] = run.push_raw(people(1, tag="mid", consent=True))
    # The request is at the API (answered after 1.5 s): Redis goes away mid-task.
    wait_for(lambda: run.stack.sandbox.stats()["api_requests"] >= 1, 30, "the send to start")
    crash_redis.stop()
    time.sleep(outage_s)  # the fault's length, not a wait for anything
    crash_redis.restart()
    settle(run, redis_client, [lead_id], 90)
    one_contact_each(run, ["mid0@e2e.example"])
    log = (run.spawned.tmp_path / "m1.log").read_text(errors="replace")
    handed_back = "handed back unacknowledged" in log
    assert handed_back == (outage_s > float(FAULTY["LEADSYNC_OUTCOME_WAIT_S"]))
    reconnected(run, "m1")


@pytest.mark.parametrize("outage_s", [10.0, 60.0], ids=["outage-10s", "outage-60s"])
def test_kill_minus_nine_and_an_outage_lose_nothing(
    fleet: Callable[..., Fleet], crash_redis: CrashableRedis, redis_client: redis.Redis,
    outage_s: float,
) -> None:
    """The done-when run: 1,000 leads, three kill -9 at random moments, then one outage."""
    leads = 1_000
    run = fleet(latency_ms=20, settings_env=FAULTY)
    for name in ("c1", "c2"):
        run.start_worker(name, concurrency=4)
    run.start_beat()
    run.wait_ready("c1", "c2")
    batch = people(leads, tag="chaos")
    lead_ids = run.push_raw(batch)
    started = time.monotonic()
    rng = random.Random(9)
    faults: list[str] = []
    for number in range(4):
        # Each fault hits leads in flight: wait until the workers deliver again, then pick a
        # random moment (right after a restart they would still be reconnecting, idle).
        progress_from = delivered(redis_client) or 0
        wait_for(lambda n=progress_from: (delivered(redis_client) or 0) >= min(n + 20, leads),
                 120, "deliveries to flow again before the next fault")
        time.sleep(rng.uniform(0.1, 0.8))  # a random moment, not a wait for anything
        crash_redis.kill9()
        at = time.monotonic() - started
        if number < 3:
            faults.append(f"kill -9 #{number + 1} at {at:.1f}s")
            time.sleep(rng.uniform(0.2, 1.5))
        else:
            faults.append(f"outage of {outage_s:g}s at {at:.1f}s")
            time.sleep(outage_s)  # the outage itself
        crash_redis.restart()
    back, back_wall = time.monotonic(), time.time()
    try:
        settle(run, redis_client, lead_ids, 240 + outage_s)
    except AssertionError as exc:
        exited = {name: proc.poll() for name, proc in run.workers.items()
                  if proc.poll() is not None}
        critical = [line[:200] for name in ("c1", "c2") for line in
                    (run.spawned.tmp_path / f"{name}.log").read_text(errors="replace")
                    .splitlines() if "CRITICAL" in line]
        raise AssertionError(f"{exc}; workers exited: {exited}; {critical}") from None
    drained = time.monotonic()
    seen = one_contact_each(run, [lead["email"] for lead in batch])
    assert sum(seen.values()) == leads
    ledger = Account(run.stack.settings, redis_client).ledger
    pipe = redis_client.pipeline(transaction=False)
    for lead_id in lead_ids:
        pipe.hmget(ledger.keys.lead_outcome(lead_id), "retry_at", "attempts")
    rows = pipe.execute()
    through_schedule = sum(1 for retry_at, _ in rows if retry_at)
    budget_retries = sum(int(attempts or 0) for _, attempts in rows)
    stats = run.stack.sandbox.stats()
    logs = "".join((run.spawned.tmp_path / f"{n}.log").read_text(errors="replace")
                   for n in ("c1", "c2"))
    fatal = [line[:200] for line in logs.splitlines() if "Unrecoverable error" in line]
    assert not fatal, f"a worker died of the faults: {fatal}"
    for name in ("c1", "c2"):
        reconnected(run, name)
    wait_for(lambda: last_reconcile_sent(run) > back_wall, 30,
             "beat to send leadsync.reconcile after Redis came back")
    print(f"\n{leads} leads, {'; '.join(faults)}; Redis restarts {crash_redis.restarts}")
    print(f"drained {drained - started:.1f}s after the push, {drained - back:.1f}s after Redis "
          f"came back from the outage")
    print(f"leads through the schedule {through_schedule}, budget-spending retries "
          f"{budget_retries}, hand-backs (Reject requeue) "
          f"{logs.count('handed back unacknowledged')}")
    print(f"API requests {stats['api_requests']}, sign-up-form calls "
          f"{stats['sign_up_form']['calls']} for {leads} contacts (re-sends after lost AOF "
          f"writes are upserts of the same contact)")
