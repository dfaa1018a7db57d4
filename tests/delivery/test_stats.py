"""`leadsync status` shows where leads are, from delivery's own bookkeeping (one function)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from worker.account import Account
from worker.cli import main
from worker.leads.enqueue import enqueue_leads
from worker.leads.lead import parse_lead
from worker.ledger.parking import QUOTA, REAUTH

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
