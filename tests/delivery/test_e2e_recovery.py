"""Issue 9: a dead worker's leads come back within 60 s at the default settings, a live worker's
slow task is never handed to another worker, and a warm shutdown (SIGTERM) leaves nothing to wait
for. Real `celery worker` processes, a private Redis and the sandbox; figures are printed."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Callable

import pytest
import redis

from tests.fixtures.delivery import Fleet
from tests.fixtures.fleet import alive, people, start_pool_worker
from tests.fixtures.ops import wait_for
from worker.base.keys import Keys
from worker.base.names import LEADS_QUEUE
from worker.base.priority import queued
from worker.base.settings import Settings
from worker.ledger.lead_state import LeadState

pytestmark = [pytest.mark.redis, pytest.mark.slow]

DEFAULT_VISIBILITY_S = Settings.model_fields["visibility_timeout_s"].default
UNACKED = "unacked"  # kombu's hash of delivered, unacknowledged messages
# Celery's "Task ... received" line, shown at DEBUG only (worker/base/log.py): the tests that
# count what each worker received run their workers with LOG_DEBUG.
LOG_DEBUG = {"LEADSYNC_LOG_LEVEL": "DEBUG"}
RECEIVED = re.compile(r"Task leadsync\.sync_lead\[([0-9a-f-]+)\] received")
TASK_LEAD = re.compile(r"Task leadsync\.sync_lead\[([0-9a-f-]+)\] received.*?'lead_id': '([^']+)'")


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def held_lead_ids(client: redis.Redis) -> set[str]:
    """Lead ids of the messages in kombu's unacked hash (taken by some worker, not acked)."""
    held = set()
    for raw in client.hvals(UNACKED):
        payload = json.loads(raw)[0]
        if payload.get("headers", {}).get("task") != "leadsync.sync_lead":
            continue  # a ping's reply, say
        args = json.loads(payload["body"])[0]
        held.add(str(args[0]["lead_id"]))
    return held


def ledger(client: redis.Redis, lead_id: str) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in client.hgetall(Keys().lead_outcome(lead_id)).items()}


def delivered_count(client: redis.Redis, lead_ids: list[str]) -> int:
    pipe = client.pipeline(transaction=False)
    for lead_id in lead_ids:
        pipe.hget(Keys().lead_outcome(lead_id), "state")
    return sum(1 for state in pipe.execute() if state == b"delivered")


def writes_per_email(run: Fleet) -> Counter[str]:
    """Sign-up-form writes the sandbox received per email address."""
    calls = run.stack.sandbox.stats()["sign_up_form_calls_per_contact"]
    emails = {c["contact_id"]: c["email_address"]["address"]
              for c in run.stack.sandbox.contacts()}
    return Counter({emails[cid]: count for cid, count in calls.items()})


def received_task_ids(run: Fleet, *names: str) -> Counter[str]:
    """How often each task id was received, over the named workers' logs."""
    found: Counter[str] = Counter()
    for name in names:
        found.update(RECEIVED.findall(run.spawned.log(name)))
    return found


def assert_nothing_left(client: redis.Redis) -> None:
    # Task messages only: a control client's ping replies sit in `unacked` too (the reliable
    # fetch records no-ack consumers' messages; the sweep pushes them back to the reply queue).
    wait_for(lambda: not held_lead_ids(client) and queued(client, LEADS_QUEUE) == 0, 30,
             "every lead message to be acknowledged")
    keys = Keys()
    assert client.zcard(keys.lead_state_index(LeadState.IN_FLIGHT)) == 0
    assert client.zcard(keys.lead_state_index(LeadState.RETRYING)) == 0
    assert client.hlen(keys.dead_letters) == 0
    assert client.llen(keys.malformed) == 0


def lead_ids_of_tasks(run: Fleet, name: str) -> dict[str, str]:
    """task id -> lead id for every task the named worker received (from its log)."""
    return dict(TASK_LEAD.findall(run.spawned.log(name)))


def test_kill_minus_nine_of_a_whole_worker_gives_its_leads_back_within_a_minute(
    fleet: Callable[..., Fleet], redis_client: redis.Redis
) -> None:
    """Default visibility timeout; the killed worker's parent and pool die together."""
    leads_total = 1_000
    run = fleet(latency_ms=20, settings_env={
        "LEADSYNC_VISIBILITY_TIMEOUT_S": f"{DEFAULT_VISIBILITY_S:g}"})
    run.start_worker("victim", concurrency=2)
    run.start_worker("survivor", concurrency=2)
    run.wait_ready("victim", "survivor")
    lead_ids = run.push_raw(people(leads_total, tag="dead", consent=True))
    wait_for(lambda: delivered_count(redis_client, lead_ids) >= 100, 120, "100 deliveries")

    victim = run.workers["victim"]
    pids = run.worker_pids("victim")
    os.killpg(victim.pid, signal.SIGKILL)
    killed_at = time.time()
    victim.wait(10)
    wait_for(lambda: not alive(pids), 10, "the victim's pool to die with it")
    # What was taken and not acknowledged at the kill: the victim's messages among them.
    held = {lead_id for lead_id in held_lead_ids(redis_client)
            if ledger(redis_client, lead_id).get("state") != "delivered"}
    assert held, "the victim held nothing when it was killed"

    run.wait_settled(lead_ids, 240)
    assert_nothing_left(redis_client)
    delays = {lead_id: float(ledger(redis_client, lead_id)["delivered_at"]) - killed_at
              for lead_id in held}
    worst = max(delays.values())
    writes = writes_per_email(run)
    twice = {email for email, count in writes.items() if count > 1}
    stats = run.stack.sandbox.stats()
    print(f"\nDEAD-WORKER visibility={DEFAULT_VISIBILITY_S:g}s held_at_kill={len(held)} "
          f"worst_delay={worst:.1f}s delays={sorted(round(d, 1) for d in delays.values())} "
          f"contacts={stats['contacts']} written_twice={len(twice)}")
    assert worst < 60.0, f"a dead worker's lead came back after {worst:.1f} s"
    assert stats["contacts"]["count"] == leads_total
    assert stats["contacts"]["created"] == leads_total
    # Only a write the victim had sent when it died may have reached the sandbox twice.
    held_emails = {f"dead{n}@e2e.example" for n, lead in enumerate(lead_ids) if lead in held}
    assert twice <= held_emails, sorted(twice - held_emails)[:5]


def test_a_live_workers_slow_task_is_never_handed_to_another_worker(
    fleet: Callable[..., Fleet], redis_client: redis.Redis
) -> None:
    """Tasks last more than twice the visibility timeout, on a prefork worker and a solo one
    (whose tasks block its event loop); the prefork one also gets SIGTERM (warm shutdown) while
    its tasks run. Every task is received once; every address written once."""
    visibility_s = 3.0
    run = fleet(latency_ms=8_000, settings_env={
        **LOG_DEBUG, "LEADSYNC_VISIBILITY_TIMEOUT_S": f"{visibility_s:g}",
        "LEADSYNC_HTTP_TIMEOUT_S": "20", "LEADSYNC_REFRESH_LOCK_TTL_S": "45"})
    run.start_worker("slow-a", concurrency=2)
    start_pool_worker(run, "slow-b", pool="solo", concurrency=1)
    run.wait_ready("slow-a", "slow-b")
    lead_ids = run.push_raw(people(3, tag="slow", consent=True))
    wait_for(lambda: len(held_lead_ids(redis_client)) == 3, 30, "both workers to take leads")
    taken_at = time.monotonic()
    # Past the visibility timeout, while the workers are still waiting on the sandbox.
    wait_for(lambda: time.monotonic() > taken_at + visibility_s, 10, "the timeout to pass")
    stopping = run.workers["slow-a"]
    os.kill(stopping.pid, signal.SIGTERM)  # the parent alone, as docker stop and k8s do
    stopping.wait(60)

    run.wait_settled(lead_ids, 60)
    assert_nothing_left(redis_client)
    received = received_task_ids(run, "slow-a", "slow-b")
    by_a = lead_ids_of_tasks(run, "slow-a")
    writes = writes_per_email(run)
    print(f"\nSLOW-TASK visibility={visibility_s:g}s task~8s received={sorted(received.values())} "
          f"slow-a_exit={stopping.returncode} writes={sorted(writes.values())}")
    assert len(received) == 3 and set(received.values()) == {1}, received
    assert len(by_a) == 2  # slow-a finished its own tasks during the warm shutdown
    assert stopping.returncode == 0
    assert sorted(writes.values()) == [1, 1, 1]


def test_sigterm_to_the_whole_group_hands_its_leads_back_at_once(
    fleet: Callable[..., Fleet], redis_client: redis.Redis
) -> None:
    """systemd's default stop signals every process of the unit: the pool children die mid-task.
    Their messages go back to the queue at once and the other worker delivers them; a visibility
    timeout of 600 s shows nothing waited for the sweep."""
    visibility_s = 600
    run = fleet(latency_ms=1_000, settings_env={
        **LOG_DEBUG, "LEADSYNC_VISIBILITY_TIMEOUT_S": str(visibility_s)})
    run.start_worker("stopping", concurrency=2)
    run.start_worker("staying", concurrency=2)
    run.wait_ready("stopping", "staying")
    lead_ids = run.push_raw(people(30, tag="term", consent=True))
    wait_for(lambda: delivered_count(redis_client, lead_ids) >= 4, 60, "the first deliveries")
    stopping = run.workers["stopping"]
    os.killpg(stopping.pid, signal.SIGTERM)
    stopped_at = time.time()
    stopping.wait(60)
    # Started there, not finished there: these leads were handed back.
    started = set(lead_ids_of_tasks(run, "stopping").values())
    handed_back = {lead for lead in started if ledger(redis_client, lead).get("state")
                   != "delivered"}
    assert handed_back, "the SIGTERM came between tasks: nothing was in flight"

    run.wait_settled(lead_ids, 120)
    assert_nothing_left(redis_client)
    by_staying = set(lead_ids_of_tasks(run, "staying").values())
    delays = [float(ledger(redis_client, lead)["delivered_at"]) - stopped_at
              for lead in handed_back]
    stats = run.stack.sandbox.stats()
    print(f"\nSIGTERM-GROUP visibility={visibility_s}s handed_back={len(handed_back)} "
          f"delivered_after={sorted(round(d, 1) for d in delays)}s exit={stopping.returncode} "
          f"contacts={stats['contacts']}")
    assert handed_back <= by_staying
    assert max(delays, default=0.0) < visibility_s / 4
    assert stats["contacts"]["count"] == stats["contacts"]["created"] == len(lead_ids)
