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
from worker.bulk.keys import BulkKeys
from worker.idempotency import Ledger

pytestmark = pytest.mark.redis

BACKLOG = 10_000


def imported(client: redis.Redis, fleet: Fleet) -> int:
    raw = client.hget(f"{fleet.stack.settings.key_prefix}:stats", "imported")
    return int(raw or 0)


def settled_states(fleet: Fleet, client: redis.Redis, lead_ids: list[str]) -> dict[str, int]:
    ledger = Ledger(fleet.stack.settings, client)
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
    keys = BulkKeys.of(run.stack.settings)
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
