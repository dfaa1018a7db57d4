"""Issue 4, done when 3: `kill -9` at random moments while 1,000 leads flow, of all three kinds:
the worker's parent alone (Celery's prefork pool sets PR_SET_PDEATHSIG, so its children must
die with it), the whole process group, and one pool child. Nothing is lost: every lead ends
delivered in the ledger and as a contact, nothing is dead-lettered, and nothing is left in the
queue, in kombu's `unacked` hash or in the in-flight index. Messages a killed parent held come
back through kombu's restore sweep once their holder's heartbeat has been silent for the
visibility timeout (the default: nothing shortened for the test); how long each kill took to
recover is printed."""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import redis

from tests.fixtures.delivery import Fleet
from tests.fixtures.fleet import alive, people
from tests.fixtures.ops import wait_for
from worker.base.keys import Keys
from worker.base.names import LEADS_QUEUE
from worker.base.priority import queued
from worker.base.settings import Settings
from worker.ledger.lead_state import LeadState

pytestmark = [pytest.mark.redis, pytest.mark.slow]

LEADS = 1_000
VISIBILITY_S = Settings.model_fields["visibility_timeout_s"].default
KILL_KINDS = ("parent", "group", "child")
KILLS = 9
UNACKED = "unacked"  # kombu's hash of delivered, unacknowledged messages


@dataclass
class Kill:
    kind: str
    worker: str
    at: float  # wall clock, comparable with the ledger's delivered_at
    in_flight: list[str] = field(default_factory=list)
    unacked: int | None = None  # entries in kombu's unacked hash once a parent is gone

    def recovery_s(self, delivered_at: dict[str, float]) -> float:
        """How long after the kill the last lead in flight at that moment was delivered."""
        times = [delivered_at[lead] - self.at for lead in self.in_flight if lead in delivered_at]
        return max(times, default=0.0)


def in_flight(client: redis.Redis, keys: Keys) -> list[str]:
    return [_text(v) for v in client.zrange(keys.lead_state_index(LeadState.IN_FLIGHT), 0, -1)]


def pool_gone(children: list[int]) -> Callable[[], bool]:
    return lambda: not alive(children)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def test_kill_minus_nine_of_parents_groups_and_children_loses_nothing(
    fleet: Callable[..., Fleet], redis_client: redis.Redis
) -> None:
    run = fleet(latency_ms=40,  # tasks take long enough to be caught mid-flight
                settings_env={"LEADSYNC_BACKOFF_MAX_S": "2", "LEADSYNC_HTTP_TIMEOUT_S": "2"})
    keys = Keys()
    live = {f"k{n}": f"k{n}" for n in range(3)}  # slot -> current incarnation's name
    for name in live.values():
        run.start_worker(name, concurrency=2)
    run.wait_ready(*live.values())
    lead_ids = run.push_raw(people(LEADS, tag="kill"))

    rng = random.Random(11)
    plan = [KILL_KINDS[n % len(KILL_KINDS)] for n in range(KILLS)]
    rng.shuffle(plan)
    kills: list[Kill] = []
    orphans: list[int] = []
    try:
        for number, kind in enumerate(plan):
            time.sleep(rng.uniform(0.3, 1.2))  # a random moment, not a wait for anything
            pids = {slot: run.worker_pids(live[slot]) for slot in sorted(live)}
            if kind == "child":  # a worker whose pool is up (a restarted one may be starting)
                choices = [slot for slot, found in pids.items() if len(found) > 1]
                if not choices:
                    continue
                slot = rng.choice(choices)
            else:
                slot = rng.choice(sorted(live))
            name = live[slot]
            parent, *children = pids[slot]
            kill = Kill(kind, name, time.time(), in_flight(redis_client, keys))
            if kind == "child":
                os.kill(rng.choice(children), signal.SIGKILL)
            else:
                if kind == "parent":
                    os.kill(parent, signal.SIGKILL)
                else:
                    os.killpg(parent, signal.SIGKILL)
                run.workers[name].wait(10)
                orphans += children
                # PR_SET_PDEATHSIG: the pool dies with its parent.
                wait_for(pool_gone(children), 10, f"the pool of {name} to die with it")
                kill.unacked = int(redis_client.hlen(UNACKED))
                live[slot] = f"{slot}-{number}"
                run.start_worker(live[slot], concurrency=2)
            kills.append(kill)
        run.wait_settled(lead_ids, 300)
    finally:
        for pid in alive(orphans):  # only if a pool outlived its parent (the wait above failed)
            os.kill(pid, signal.SIGKILL)

    # Nothing left anywhere: every message acknowledged, no lead between states.
    wait_for(lambda: redis_client.hlen(UNACKED) == 0 and queued(redis_client, LEADS_QUEUE) == 0, 60,
             "every message to be acknowledged")
    assert redis_client.zcard(keys.lead_state_index(LeadState.IN_FLIGHT)) == 0
    assert redis_client.zcard(keys.lead_state_index(LeadState.RETRYING)) == 0
    assert redis_client.hlen(keys.dead_letters) == 0
    assert redis_client.llen(keys.malformed) == 0

    stats = run.stack.sandbox.stats()
    contacts, form = stats["contacts"], stats["sign_up_form"]
    assert contacts["count"] == LEADS
    assert contacts["created"] == LEADS  # a second try may update, never create twice

    delivered_at = {}
    for lead_id in lead_ids:
        record = {_text(k): _text(v) for k, v in
                  redis_client.hgetall(keys.lead_outcome(lead_id)).items()}
        assert record["state"] == "delivered", (lead_id, record.get("state"))
        delivered_at[lead_id] = float(record["delivered_at"])
    done = Counter(kill.kind for kill in kills)
    summary = ", ".join(f"{k.kind}:{k.worker} in_flight={len(k.in_flight)} "
                        + (f"unacked={k.unacked} " if k.unacked is not None else "")
                        + f"back_in={k.recovery_s(delivered_at):.1f}s" for k in kills)
    print(f"\nKILL done={dict(done)} visibility={VISIBILITY_S}s contacts={contacts} "
          f"sign_up_form={form} second_writes={contacts['updated']}\nKILL {summary}")
    assert done.get("parent", 0) >= 2 and done.get("group", 0) >= 2
    assert done.get("child", 0) >= 1
