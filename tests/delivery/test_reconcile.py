"""The reconciler: a lead whose ledger says in_flight but whose message is nowhere goes back once.

The ledger entry is left as a worker killed mid-lead leaves it (in_flight, lease run out) and
the message is deleted from Redis (not on the list, not in `unacked`, not in the schedule). The
reconciler, in-process and then as the real beat task with a real worker, puts it back exactly
once; a lead that settles while the reconciler looks is never put back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from tests.fixtures.delivery import Fleet
from tests.fixtures.leads import pop_entry
from tests.fixtures.ops import wait_for
from worker.account import Account
from worker.base.names import LEADS_QUEUE
from worker.base.priority import queued
from worker.leads.lead import Lead, parse_lead
from worker.leads.wire import encode_message, parse_message
from worker.ledger.lead_state import LeadState
from worker.ledger.ledger import Ledger
from worker.ledger.reconcile import STALE_S

LONG_AGO_S = STALE_S + 50


def lost_in_flight(ledger: Ledger, lead: Lead, *, task_id: str = "dead-task") -> None:
    """What a worker killed after `begin` leaves once its message is gone: a stale in_flight."""
    taken = ledger.begin(lead.lead_id, task_id, encode_message(lead, task_id=task_id), 5.0,
                         now=time.time() - LONG_AGO_S)
    assert taken.outcome == "taken"


def test_a_lead_with_no_message_anywhere_is_put_back_once(
    make_settings: Any, redis_client: redis.Redis
) -> None:
    settings = make_settings()
    account = Account(settings, redis_client)
    ledger = account.ledger
    lost = parse_lead({"email": "lost@reconcile.example"})
    waiting = parse_lead({"email": "waiting@reconcile.example"})
    lost_in_flight(ledger, lost)
    lost_in_flight(ledger, waiting, task_id="held-task")
    # The second one's message is still in kombu's `unacked`: kombu's sweep brings it back.
    redis_client.hset("unacked", "tag-1", encode_message(waiting, task_id="held-task"))
    reconciler = account.reconciler()
    report = reconciler.run()
    assert (report.checked, report.requeued) == (2, 1)
    assert parse_message(pop_entry(redis_client)).lead_id == lost.lead_id  # type: ignore[arg-type]
    assert queued(redis_client, LEADS_QUEUE) == 0
    assert ledger.state(lost.lead_id) == LeadState.QUEUED
    assert reconciler.run().requeued == 0  # once: queued now, no longer a candidate


def test_a_lead_that_settles_while_the_reconciler_looks_is_not_put_back(
    make_settings: Any, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings()
    account = Account(settings, redis_client)
    ledger = account.ledger
    lead = parse_lead({"email": "late@reconcile.example"})
    lost_in_flight(ledger, lead)
    reconciler = account.reconciler()
    search = reconciler._present

    def settle_meanwhile(stuck: dict[str, dict[str, str]]) -> set[str]:
        assert ledger.move(lead.lead_id, "deliver")[0]  # the slow holder finishes after all
        return search(stuck)

    monkeypatch.setattr(reconciler, "_present", settle_meanwhile)
    assert reconciler.run().requeued == 0
    assert queued(redis_client, LEADS_QUEUE) == 0
    assert ledger.state(lead.lead_id) == LeadState.DELIVERED


@pytest.mark.redis
def test_beat_reconciles_a_deleted_message_and_the_worker_sends_it_once(
    fleet: Callable[..., Fleet], redis_client: redis.Redis
) -> None:
    run = fleet(settings_env={"LEADSYNC_RECONCILE_INTERVAL_S": "1"})
    ledger = Account(run.stack.settings, redis_client).ledger
    lead = parse_lead({"email": "deleted@reconcile.example", "consent": True})
    lost_in_flight(ledger, lead)
    assert queued(redis_client, LEADS_QUEUE) == 0 and redis_client.hlen("unacked") == 0
    run.start_worker("r1", concurrency=2)
    run.start_beat()
    run.wait_settled([lead.lead_id], 90)
    stats = run.stack.sandbox.stats()["sign_up_form"]
    assert stats["calls"] == 1 and stats["contacts"] == 1
    wait_for(lambda: redis_client.hlen("unacked") == 0, 30, "the message to be acknowledged")
    assert queued(redis_client, LEADS_QUEUE) == 0
