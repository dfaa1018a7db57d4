"""Bulk delivery end to end: real `celery worker` and `celery beat` processes, the sandbox, a
private Redis. A backlog of leads without consent is staged by the workers and imported by the
beat-scheduled `leadsync.bulk_import`; the sandbox counts every import and every poll."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from tests.fixtures.delivery import Fleet
from tests.fixtures.fleet import people
from tests.fixtures.ops import wait_for
from worker.account import Account
from worker.base.keys import Keys
from worker.ledger import delivered

pytestmark = pytest.mark.redis

BACKLOG = 10_000


def imported(client: redis.Redis, fleet: Fleet) -> int:
    raw = client.hget(f"{fleet.stack.settings.key_prefix}:stats", "imported")
    return int(raw or 0)


def settled_states(fleet: Fleet, client: redis.Redis, lead_ids: list[str]) -> dict[str, int]:
    ledger = Account(fleet.stack.settings, client).ledger
    counts: dict[str, int] = {}
    pipe = client.pipeline(transaction=False)
    for lead_id in lead_ids:
        pipe.hmget(ledger.keys.lead_outcome(lead_id), ["state", "action"])
    for state, action in pipe.execute():
        name = f"{(state or b'').decode()}/{(action or b'').decode()}"
        counts[name] = counts.get(name, 0) + 1
    return counts


def test_ten_thousand_leads_without_consent_take_at_most_3_imports_and_30_polls(
        fleet: Callable[..., Fleet], redis_client: redis.Redis) -> None:
    run = fleet(settings_env={"LEADSYNC_BULK": "auto"})
    lead_ids = run.push_raw(people(BACKLOG, tag="bulk", consent=False))
    started = time.monotonic()
    run.start_worker("b1", concurrency=4)
    run.start_beat()
    wait_for(lambda: imported(redis_client, run) >= BACKLOG, 400,
             f"{BACKLOG} leads to be imported")
    elapsed = time.monotonic() - started
    keys = Keys(run.stack.settings.key_prefix, run.stack.settings.account).bulk
    wait_for(lambda: not redis_client.zcard(keys.batches), 30, "the batches to be dropped")
    assert settled_states(run, redis_client, lead_ids) == {"delivered/imported": BACKLOG}
    stats: dict[str, Any] = run.stack.sandbox.stats()
    assert stats["contacts"]["count"] == BACKLOG
    assert stats["activities"]["imports"] <= 3, stats["activities"]
    assert stats["activities"]["polls"] <= 30, stats["activities"]
    # No single-path call for any of them: every API request is an import or a poll.
    assert stats["api_requests"] == (stats["activities"]["imports"]
                                     + stats["activities"]["polls"]), stats["api_requests"]
    print(f"\n{BACKLOG} leads: {stats['activities']} in {elapsed:.1f} s")


def test_an_import_refusing_100_emails_dead_letters_them_and_dlq_replay_delivers_them(
        fleet: Callable[..., Fleet], redis_client: redis.Redis,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from worker.cli import main

    run = fleet(settings_env={"LEADSYNC_BULK": "always"})
    good = people(900, tag="fine", consent=False)
    refused = [{**lead, "custom_fields": {"trade_show": "Boston"}}
               for lead in people(100, tag="refused", consent=False)]
    mixed = [lead for pair in zip(good[:100], refused, strict=True) for lead in pair] + good[100:]
    lead_ids = run.push_raw(mixed)
    refused_ids = set(lead_ids[1:200:2])
    run.start_worker("r1", concurrency=4)
    run.start_beat()
    run.wait_settled(lead_ids, 180, settled=("delivered", "dead_lettered"))
    states = run.states(lead_ids)
    assert {i for i, s in states.items() if s == "dead_lettered"} == refused_ids
    letters = Account(run.stack.settings, redis_client).dead_letters
    for lead_id in refused_ids:
        letter = letters.get(lead_id)
        assert letter.reason_code == "import_refused"
        # Constant Contact's string, the email in it scrubbed.
        assert letter.reason.startswith("Line ") and "cf:trade_show does not exist" in \
            letter.reason and "@e2e.example" not in letter.reason, letter.reason
    assert run.stack.sandbox.stats()["activities"]["imports"] == 1
    # The operator adds the field in Constant Contact and replays the letters.
    run.stack.sandbox.state.store.custom_fields["f-trade-show"] = {
        "custom_field_id": "f-trade-show", "name": "trade_show", "label": "trade show",
        "type": "string"}
    for name, value in run.stack.env.items():
        monkeypatch.setenv(name, value)
    from worker.base.settings import get_settings
    get_settings.cache_clear()
    assert main(["dlq", "replay", "--all", "--reason", "import_refused"]) == 0
    capsys.readouterr()
    run.wait_settled(sorted(refused_ids), 180)
    assert settled_states(run, redis_client, lead_ids) == {"delivered/imported": 1_000}
    assert run.stack.sandbox.stats()["activities"]["imports"] == 2


KILL_LEADS = 3_000


def test_kill_minus_nine_of_workers_and_beat_during_imports_loses_and_doubles_nothing(
        fleet: Callable[..., Fleet], redis_client: redis.Redis) -> None:
    import contextlib
    import os
    import random
    import signal

    from tests.fixtures.ops import REPO

    run = fleet(activity_step_s=1.5,  # each import is processing for a while: kills land there
                settings_env={"LEADSYNC_BULK": "always", "LEADSYNC_BULK_MAX_CONTACTS": "1500",
                              "LEADSYNC_BULK_INTERVAL_S": "1"})
    lead_ids = run.push_raw(people(KILL_LEADS, tag="crash", consent=False))
    rng = random.Random(12)
    incarnation = {"w1": 0, "w2": 0, "beat": 0}

    def start(slot: str) -> Any:
        incarnation[slot] += 1
        name = f"{slot}i{incarnation[slot]}"
        if slot == "beat":
            return run.spawned.start(name, ["celery", "-A", "worker", "beat",
                                            f"--schedule={run.spawned.tmp_path}/{name}.db",
                                            "--loglevel=INFO"], run.env, cwd=REPO)
        run.start_worker(name, concurrency=2)
        return name

    live: dict[str, Any] = {slot: start(slot) for slot in ("w1", "w2", "beat")}
    kills = 0
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and imported(redis_client, run) < KILL_LEADS:
        time.sleep(rng.uniform(0.5, 3.0))  # a random moment, not a wait for anything
        slot = rng.choice(sorted(live))
        pids = ([live[slot].pid] if slot == "beat" else run.worker_pids(live[slot]))
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        kills += 1
        live[slot] = start(slot)
    assert kills >= 3
    run.wait_settled(lead_ids, 300, settled=("delivered", "dead_lettered"))
    keys = Keys(run.stack.settings.key_prefix, run.stack.settings.account).bulk
    wait_for(lambda: not redis_client.zcard(keys.batches) and not redis_client.zcard(
        keys.staged), 60, "nothing left staged or in a batch")
    assert settled_states(run, redis_client, lead_ids) == {"delivered/imported": KILL_LEADS}
    counts = redis_client.hgetall(f"{run.stack.settings.key_prefix}:stats")
    # Nobody counted twice. `imported` is counted right after the leads' ledger steps (best
    # effort): a kill between the two leaves it short, never over. Each `deliver` step counts
    # its lead delivered itself: exact.
    assert KILL_LEADS - kills <= int(counts[b"imported"]) <= KILL_LEADS
    all_keys = Keys(run.stack.settings.key_prefix, run.stack.settings.account)
    assert delivered.counts(redis_client, all_keys).total == KILL_LEADS
    assert not redis_client.hlen(run.stack.settings.key_prefix + ":dlq")  # no dead letter
    stats = run.stack.sandbox.stats()
    assert stats["contacts"]["count"] == KILL_LEADS
    assert stats["activities"]["imports"] >= 2
    print(f"\n{kills} kills; {stats['activities']}")
