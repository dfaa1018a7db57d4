"""`leadsync status` shows where leads are, from delivery's own bookkeeping (one function)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from typing import Any

import pytest
import redis

from worker.account import Account
from worker.cli import main
from worker.leads.enqueue import enqueue_leads
from worker.leads.lead import parse_lead
from worker.ledger import delivered
from worker.ledger.parking import QUOTA, REAUTH
from worker.report.stats import lead_counts

pytestmark = pytest.mark.redis


def test_status_counts_delivered_parked_dead_letters_queue_and_quota(
    delivery_stack: Any, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stack = delivery_stack()
    account = Account(stack.settings, redis_client)
    for key, value in stack.env.items():
        monkeypatch.setenv(key, value)
    delivery = account.new_delivery()
    for n in range(3):
        assert delivery.run(parse_lead({"email": f"p{n}@ok.example", "consent": True})
                            ).status == "delivered"
    dead = parse_lead({"email": "d@ok.example", "consent": True,
                       "list_ids": ["00000000-0000-4000-8000-00000000dead"]})
    assert delivery.run(dead).status == "dead_lettered"
    lot = account.parking
    lot.park(parse_lead({"email": "q@ok.example"}), QUOTA, resume_at=4_102_444_800.0)
    lot.park(parse_lead({"email": "r@ok.example"}), REAUTH, resume_at=0.0)
    enqueue_leads([{"email": "w@ok.example"}, {"email": "x@ok.example"}], redis=redis_client)

    assert main(["status", "--json"]) == 0
    leads = json.loads(capsys.readouterr().out)["leads"]
    assert leads["delivered"] == 3 and leads["created_total"] == 3
    assert leads["dead_letters"] == 1 and leads["dead_letters_by_reason"] == {"http_404": 1}
    assert (leads["parked_quota"], leads["parked_reauth"]) == (1, 1)
    assert leads["next_resume_at"] == 4_102_444_800.0
    assert leads["queued"] == 2 and leads["in_flight"] == 0 and leads["retrying"] == 0
    assert leads["requests_today"] == 4  # three deliveries and the refused one
    assert leads["last_errors"][0]["status"] == "http_404"

    assert main(["status"]) == 0
    text = capsys.readouterr().out
    assert "parked quota" in text and "dead letters by reason" in text
    assert "@ok.example" not in text  # no personal data in the status output


def test_delivered_is_the_last_hour_by_whole_minutes_and_the_total_keeps_every_delivery(
    make_settings: Any, redis_client: redis.Redis
) -> None:
    account = Account(make_settings(), redis_client)
    keys, ledger = account.keys, account.ledger
    # What an older version left: its running total, and its sorted set of the last hour.
    redis_client.hset(keys.stats, "delivered", 1_000)
    redis_client.zadd(keys.delivered_recent, {f"old{n}": time.time() for n in range(50)})
    now = 60 * (int(time.time()) // 60) + 30.0  # half a minute into a minute
    delivered_at = {"a": now, "b": now - 3_540,  # this minute, and the oldest one still counted
                    "c": now - 3_600,  # in the minute that began 60.5 minutes ago: folded
                    "d": now - 7_200, "e": now - 86_400}
    for lead_id, at in delivered_at.items():
        assert ledger.move(lead_id, "deliver", now=at)[0]
    assert not ledger.move("a", "deliver", now=now)[0]  # delivered once, counted once

    leads = lead_counts(account, now=now)
    assert (leads["delivered"], leads["delivered_total"]) == (2, 1_005)
    # Folded into the running total: only the window's minutes are left, the old set is gone.
    assert int(redis_client.hget(keys.stats, "delivered") or 0) == 1_003
    assert redis_client.hlen(keys.delivered_minutes) == 2
    assert not redis_client.exists(keys.delivered_recent)
    assert lead_counts(account, now=now + 60)["delivered"] == 1  # b's minute left the hour
    assert lead_counts(account, now=now + 60)["delivered_total"] == 1_005


def test_the_reconcile_task_folds_old_minutes_and_counts_stay_exact_beside_deliveries(
    make_settings: Any, redis_client: redis.Redis
) -> None:
    account = Account(make_settings(), redis_client)
    keys, ledger = account.keys, account.ledger
    start = time.time() - 3 * 3_600
    leads = 600
    seen: list[delivered.Delivered] = []
    done = threading.Event()

    def status_beside() -> None:
        while not done.is_set():
            seen.append(delivered.counts(redis_client, keys))

    reader = threading.Thread(target=status_beside)
    reader.start()
    try:
        for n in range(leads):  # a delivery every 18 s over three hours, to now
            assert ledger.move(f"x{n}", "deliver", now=start + 18 * n)[0]
    finally:
        done.set()
        reader.join(30)
    assert len(seen) > 1 and all(a.total <= b.total for a, b in itertools.pairwise(seen))
    account.reconciler().run()
    assert redis_client.hlen(keys.delivered_minutes) <= 61  # an hour of fields, no more
    final = delivered.counts(redis_client, keys)
    assert final.total == leads  # nothing lost or counted twice by the folds
    assert 195 <= final.recent <= 201  # one every 18 s: 200 in an hour, by whole minutes
