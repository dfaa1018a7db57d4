"""The ledger's one Lua step against a real Redis: the transition table walked, duplicates.

Every (operation, state) pair of worker/ledger/lead_state.py's TRANSITIONS is tried on a real Redis:
allowed moves land in the target state, refused ones leave the entry untouched. Then 8
concurrent copies of one lead, 200 rounds, through `Delivery.run` and the sandbox: one send a
round, the others skip (settled) or wait in the schedule (held elsewhere) without sending.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis

from worker.account import Account
from worker.base.names import LEADS_QUEUE
from worker.base.priority import queued
from worker.delivery.run import Result
from worker.leads.lead import parse_lead
from worker.leads.wire import encode_message, queue_list
from worker.ledger.lead_state import ABSENT, INDEXED, TRANSITIONS, LeadState, allowed
from worker.ledger.ledger import Ledger

STATES = (ABSENT, *LeadState)
LEASE_S = 60.0


def _put(ledger: Ledger, client: redis.Redis, lead_id: str, state: str) -> None:
    """Put the lead in `state` directly (the walk needs every start, reachable or not)."""
    key = ledger.keys.lead_outcome(lead_id)
    client.delete(key, ledger.keys.lead_message(lead_id))
    if state != ABSENT:
        client.hset(key, mapping={"state": state, "updated_at": "1.000",
                                  "task_id": "holder", "lease_until": "0"})
        client.set(ledger.keys.lead_message(lead_id), "m")


@pytest.mark.parametrize("operation", sorted(TRANSITIONS))
def test_every_move_is_checked_against_the_table(
    operation: str, make_settings: Any, redis_client: redis.Redis
) -> None:
    ledger = Account(make_settings(), redis_client).ledger
    for start in STATES:
        lead_id = f"walk-{operation}-{start or 'absent'}"
        _put(ledger, redis_client, lead_id, start)
        if operation == "begin":
            taken = ledger.begin(lead_id, "task-1", "msg", LEASE_S)
            moved, now_state = taken.outcome == "taken", ledger.state(lead_id)
        elif operation == "promote":
            redis_client.zadd(ledger.keys.schedule, {lead_id: 0})
            Account(make_settings(), redis_client).schedule.promote()
            now_state = ledger.state(lead_id)
            moved = now_state != start
        else:
            moved, _ = ledger.move(lead_id, operation, due=0.0, message="msg")
            now_state = ledger.state(lead_id)
        target = TRANSITIONS[operation][1]
        if allowed(operation, start):
            assert moved and now_state == target, (operation, start, now_state)
        else:
            assert not moved and now_state == start, (operation, start, now_state)
    redis_client.delete(LEADS_QUEUE)


def test_settled_leads_are_never_left_and_keep_no_message(
    make_settings: Any, redis_client: redis.Redis
) -> None:
    ledger = Account(make_settings(), redis_client).ledger
    message = encode_message(parse_lead({"email": "s1@settled.example"}), task_id="t1")
    assert ledger.begin("s1", "t1", message, LEASE_S).outcome == "taken"
    assert ledger.message("s1") == message
    assert ledger.move("s1", "deliver", contact_id="c" * 36, action="created",
                       path="sign_up_form") == (True, LeadState.DELIVERED)
    assert ledger.message("s1") is None
    # The message lived beside the hash: the settled entry stays a small listpack hash.
    compact = (b"listpack", b"ziplist")  # Redis 7 and 6.2 names of the small encoding
    assert redis_client.object("encoding", ledger.keys.lead_outcome("s1")) in compact
    for operation in sorted(TRANSITIONS):
        if operation != "begin":
            assert ledger.move("s1", operation, due=0.0)[0] is False
    again = ledger.begin("s1", "t2", "the message", LEASE_S)
    assert (again.outcome, again.state) == ("settled", LeadState.DELIVERED)
    assert ledger.state("s1") == LeadState.DELIVERED


def test_a_live_lease_holds_off_other_tasks_until_it_ends(
    make_settings: Any, redis_client: redis.Redis
) -> None:
    ledger = Account(make_settings(), redis_client).ledger
    schedule = Account(make_settings(), redis_client).schedule
    assert ledger.begin("h1", "holder", "m", LEASE_S, now=1000.0).outcome == "taken"
    busy = ledger.begin("h1", "copy", "m2", LEASE_S, now=1001.0)
    assert busy.outcome == "busy" and busy.lease_until == 1000.0 + LEASE_S
    assert schedule.due_at("h1") == 1000.0 + LEASE_S  # durable: comes back at the lease end
    # The same task (a redelivered copy of the holder's own message) takes it over.
    assert ledger.begin("h1", "holder", "m", LEASE_S, now=1002.0).outcome == "taken"
    # A lease that ran out is taken over by anyone.
    assert ledger.begin("h1", "other", "m3", LEASE_S, now=2000.0).outcome == "taken"
    assert ledger.message("h1") == "m3"


def test_eight_concurrent_copies_send_once_each_round(
    delivery_stack: Any, redis_client: redis.Redis
) -> None:
    stack = delivery_stack()
    account = Account(stack.settings, redis_client)
    rounds, copies = 200, 8
    deliveries = [account.new_delivery() for _ in range(copies)]
    results: list[list[Result]] = []
    for n in range(rounds):
        lead = parse_lead({"email": f"dup{n}@race.example", "first_name": "Dup",
                           "consent": True})
        start = threading.Barrier(copies)
        found: list[Result] = []

        def run(index: int, lead: Any = lead, start: threading.Barrier = start,
                found: list[Result] = found) -> None:
            start.wait()
            found.append(deliveries[index].run(lead, task_id=f"copy-{index}"))

        threads = [threading.Thread(target=run, args=(i,)) for i in range(copies)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(found) == copies
        results.append(found)
    sent = [sum(1 for r in found if not r.duplicate) for found in results]
    assert sent == [1] * rounds
    stats = stack.sandbox.stats()["sign_up_form"]
    assert stats["calls"] == rounds and stats["max_calls_per_contact"] == 1
    assert all(r.status in (LeadState.DELIVERED, LeadState.IN_FLIGHT)
               for found in results for r in found)
    # The held-off copies' entries wait for their holder's lease end, then go, none sent.
    later = time.time() + deliveries[0].lease_s + 1
    assert account.schedule.promote_all(now=later) == 0
    assert account.schedule.size() == 0 and queued(redis_client, LEADS_QUEUE) == 0


def test_a_held_off_copys_entry_outlives_the_delivery_and_goes_unsent_when_due(
    make_settings: Any, redis_client: redis.Redis
) -> None:
    account = Account(make_settings(), redis_client)
    ledger, schedule = account.ledger, account.schedule
    assert ledger.begin("d1", "holder", "m", LEASE_S, now=1000.0).outcome == "taken"
    assert ledger.begin("d1", "copy", "m2", LEASE_S, now=1001.0).outcome == "busy"
    assert ledger.move("d1", "deliver", now=1002.0) == (True, LeadState.DELIVERED)
    assert schedule.due_at("d1") == 1000.0 + LEASE_S  # `deliver` left it (one command less)
    assert schedule.promote(now=1000.0 + LEASE_S - 1) == 0 and schedule.size() == 1
    assert schedule.promote(now=1000.0 + LEASE_S) == 0  # due: dropped, nothing pushed
    assert schedule.size() == 0 and queued(redis_client, LEADS_QUEUE) == 0
    assert ledger.state("d1") == LeadState.DELIVERED and ledger.message("d1") is None
    # A retrying lead delivered after all (its slow first try landed): the due entry goes at
    # once, or `status` would count it scheduled until its retry time.
    assert ledger.begin("d2", "first", "m", LEASE_S, now=1000.0).outcome == "taken"
    assert ledger.move("d2", "retry", now=1001.0, due=9000.0)[0]
    assert ledger.move("d2", "deliver", now=1002.0) == (True, LeadState.DELIVERED)
    assert schedule.due_at("d2") is None


@pytest.mark.parametrize("start", [LeadState.IN_FLIGHT, LeadState.RETRYING])
@pytest.mark.parametrize("by", ["promote", "requeue"])
def test_the_move_to_queued_leaves_the_same_entry_by_the_promoter_and_the_ledger(
    start: str, by: str, make_settings: Any, redis_client: redis.Redis
) -> None:
    account = Account(make_settings(), redis_client)
    ledger, schedule = account.ledger, account.schedule
    lead = parse_lead({"email": f"{start}-{by}@queued.example"})
    message = encode_message(lead, task_id="t1")
    assert ledger.begin(lead.lead_id, "t1", message, 5.0, now=1000.0).outcome == "taken"
    if start == LeadState.RETRYING:
        assert ledger.move(lead.lead_id, "retry", now=1001.0, due=1002.0)[0]
    else:
        redis_client.zadd(account.keys.schedule, {lead.lead_id: 1005.0})  # a held-off copy
    if by == "promote":
        assert schedule.promote(now=2000.0) == 1
    else:
        assert ledger.move(lead.lead_id, "requeue", now=2000.0) == (True, LeadState.QUEUED)
    entry = ledger.get(lead.lead_id)
    assert entry["state"] == LeadState.QUEUED and "lease_until" not in entry
    assert entry["updated_at"] == "2000.000" and entry["first_seen"] == "1000.000"
    for state in INDEXED:  # what `status` counts as in flight and retrying
        assert redis_client.zscore(account.keys.lead_state_index(state), lead.lead_id) is None
    if by == "promote":
        assert schedule.due_at(lead.lead_id) is None
    assert redis_client.lrange(queue_list(lead), 0, -1) == [message.encode()]
    assert ledger.message(lead.lead_id) == message


def test_replay_and_resume_push_the_message_with_the_move(
    make_settings: Any, redis_client: redis.Redis
) -> None:
    ledger = Account(make_settings(), redis_client).ledger
    lead = parse_lead({"email": "r@replay.example"})
    assert ledger.move(lead.lead_id, "dead")[0]
    assert ledger.move(lead.lead_id, "replay", message=encode_message(lead))[0]
    assert queued(redis_client, LEADS_QUEUE) == 1
    assert ledger.move(lead.lead_id, "replay", message=encode_message(lead))[0] is False
    assert queued(redis_client, LEADS_QUEUE) == 1
