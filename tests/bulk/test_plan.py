"""The quota plan (real Redis): consented leads keep a reserve until 00:00 UTC from their
observed rate, imports get the rest, the auto mode stages when single calls would not clear the
backlog in time, and `leadsync status` shows it; plus the packing of rows under the limits."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from worker.account import Account
from worker.base.keys import Keys
from worker.base.names import LEADS_QUEUE
from worker.bulk.plan import bulk_status, note_consented, quota_plan
from worker.bulk.rows import encode, import_row, pack
from worker.bulk.staging import BulkGate
from worker.cli.status_cmd import render_status
from worker.delivery.ratelimit import utc_date
from worker.leads.lead import parse_lead
from worker.report.status import gather_status

NOON = datetime(2026, 11, 30, 12, 0, tzinfo=UTC).timestamp()  # 12 h to midnight


def test_the_reserve_follows_the_consented_rate_and_imports_get_the_rest(
        make_settings: Any, redis_client: redis.Redis) -> None:
    settings = make_settings(redis_url="redis://unused", daily_quota=10_000, quota_reserve=200)
    account = Account(settings, redis_client)
    redis_client.set(Keys().daily_quota(utc_date(NOON)), 1_000)
    for _ in range(360):  # 360 consented leads in the last hour: 0.1 a second
        note_consented(account, NOON - 30)
    plan = quota_plan(account, account.limiter, now=NOON)
    assert plan.calls_left_today == 9_000
    assert plan.consented_per_s == pytest.approx(0.1)
    assert plan.reserve == 200 + 360 * 12  # 4,520: 0.1/s for the 12 h to midnight
    assert plan.bulk_budget == 9_000 - plan.reserve
    # Twice as many consented leads: the reserve grows, the bulk budget shrinks.
    for _ in range(360):
        note_consented(account, NOON - 30)
    assert quota_plan(account, account.limiter, now=NOON).bulk_budget < plan.bulk_budget


def test_auto_mode_stages_below_the_threshold_when_single_calls_would_not_finish_today(
        make_settings: Any, redis_client: redis.Redis) -> None:
    settings = make_settings(redis_url="redis://unused", bulk_threshold=10_000,
                             daily_quota=1_000, quota_reserve=100, list_ids="l1")
    account = Account(settings, redis_client)
    gate = BulkGate(account, account.ledger, account.limiter, clock=lambda: NOON)
    lead = parse_lead({"email": "a@b.example"})
    redis_client.rpush(LEADS_QUEUE, *["x"] * 50)  # 50 leads x 2 calls fit the budget
    assert not gate.wants(lead)
    redis_client.rpush(LEADS_QUEUE, *["x"] * 1_000)  # 1,050 x 2 calls do not
    gate._plan_at = -1e18  # the plan is read at most every 5 s per process
    assert gate.wants(lead)
    assert not gate.wants(parse_lead({"email": "b@b.example", "consent": True}))


def test_status_shows_the_plan(make_settings: Any, redis_client: redis.Redis) -> None:
    settings = make_settings(redis_url="redis://unused")
    redis_client.rpush(LEADS_QUEUE, "x", "y")
    account = Account(settings, redis_client)
    status = gather_status(account)
    bulk = status["bulk"]
    assert bulk["mode"] == "auto" and bulk["plan"]["backlog"] == 2
    assert bulk_status(account, account.limiter)["plan"]["calls_left_today"] == 10_000
    text = render_status(status)
    assert "bulk imports" in text and "calls left today 10000" in text and "reserve" in text


def test_batches_stay_under_the_contact_and_byte_limits_as_encoded() -> None:
    lead = parse_lead({"email": "someone@example.com", "first_name": "F" * 50,
                       "company": "C" * 50, "phone": "+1 202 555 0143",
                       "address": {"street": "S" * 255, "city": "Boston"},
                       "custom_fields": {"lead source": "web"}})
    row = encode(import_row(lead))
    assert json.loads(row)["cf:lead_source"] == "web"
    assert json.loads(row)["work_phone"] == "+1 202 555 0143"
    items = [(f"id{i}", row) for i in range(5_000)]
    batches = pack(["list-1"], items, max_contacts=40_000, max_bytes=200_000)
    assert sum(len(b.lead_ids) for b in batches) == 5_000
    assert all(len(b.body()) == b.size < 200_000 for b in batches)
    assert len(batches) == math.ceil(5_000 * (len(row) + 1) / 200_000) or len(batches) > 1
    small = pack(["l"], [(f"i{i}", "{}") for i in range(100)], max_contacts=40,
                 max_bytes=4_000_000)
    assert [len(b.lead_ids) for b in small] == [40, 40, 20]
