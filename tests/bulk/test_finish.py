"""The expected finish `leadsync status` shows (real Redis), with figures a user can check by
hand: a 50,000-lead backlog, a 10,000-call quota of which 3,000 are used, at 12:00 UTC.

The reserve is then 200 (LEADSYNC_QUOTA_RESERVE) + 60 (the floor) = 260 calls, so today's
budget is 7,000 - 260 = 6,740 calls and a later day's 10,000 - 260 = 9,740.
- Bulk off: 2 calls a lead, so 3,370 leads today and 4,870 a day after; 46,630 more leads take
  9 whole days and 2,800 leads of a tenth, which at 3.7 / 2 = 1.85 leads/s end at 00:25:14.
- Bulk on: a handful of imports of one call plus polls each; today.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from worker.account import Account
from worker.base.keys import Keys
from worker.base.names import LEADS_QUEUE
from worker.bulk.batcher import Batcher
from worker.bulk.plan import Plan, quota_plan
from worker.cli.status_cmd import render_status
from worker.delivery.ratelimit import utc_date
from worker.report.status import gather_status

pytestmark = pytest.mark.redis

NOON = datetime(2026, 11, 30, 12, 0, tzinfo=UTC).timestamp()
MIDNIGHT = datetime(2026, 12, 1, tzinfo=UTC).timestamp()


def backlog_of(client: redis.Redis, count: int, used: int) -> None:
    client.set(Keys().daily_quota(utc_date(NOON)), used)
    for start in range(0, count, 10_000):
        client.rpush(LEADS_QUEUE, *["x"] * min(10_000, count - start))


def status_at_noon(settings: Any, client: redis.Redis) -> tuple[dict[str, Any], str]:
    """The plan as `leadsync status --json` prints it, and the text line."""
    status = gather_status(Account(settings, client), now=NOON)
    as_json = json.loads(json.dumps(status, default=str))
    return as_json["bulk"]["plan"], render_status(status)


def test_bulk_off_a_50000_backlog_finishes_in_10_days_on_the_quota(
        make_settings: Any, redis_client: redis.Redis) -> None:
    settings = make_settings(redis_url="redis://unused", bulk="off")
    backlog_of(redis_client, 50_000, used=3_000)
    plan, text = status_at_noon(settings, redis_client)
    assert (plan["calls_left_today"], plan["reserve"], plan["bulk_budget"]) == (7_000, 260, 6_740)
    finish = plan["finish"]
    assert finish["path"] == "single" and finish["bound"] == "quota"
    assert (finish["leads_today"], finish["leads_per_day"]) == (3_370, 4_870)
    assert finish["days_after_today"] == 10 and finish["utc_day"] == "2026-12-10"
    last_day = datetime(2026, 12, 10, tzinfo=UTC).timestamp()
    assert plan["expected_finish"] == finish["at"] == pytest.approx(last_day + 2_800 / 1.85,
                                                                    abs=0.1)
    assert ("expected finish 2026-12-10 00:25 UTC (in 10 days; quota-bound; single calls, 2 a "
            "lead at 1.85 leads/s: 3370 leads today, 4870 a day after)") in text


@pytest.mark.parametrize("mode", ["auto", "always"])
def test_bulk_on_the_same_backlog_finishes_today(
        make_settings: Any, redis_client: redis.Redis, mode: str) -> None:
    settings = make_settings(redis_url="redis://unused", bulk=mode)
    backlog_of(redis_client, 50_000, used=3_000)
    plan, text = status_at_noon(settings, redis_client)
    finish = plan["finish"]
    assert finish["path"] == "bulk" and finish["days_after_today"] == 0
    assert finish["utc_day"] == "2026-11-30" and NOON < finish["at"] < MIDNIGHT
    # Nothing observed yet: 150 leads/s staging (333 s), rows of 250 bytes (15,139 an import
    # under 3.8 MB), a batch at least every 60 s of staging (6), 20 polls each, 60 s to settle.
    assert finish["assumed"] == ["staging_per_s", "row_bytes", "import_s", "polls_per_import"]
    assert (finish["imports"], finish["leads_per_import"], finish["calls_per_import"]) == (
        6, 15_139, 21)
    assert finish["at"] == pytest.approx(NOON + 50_000 / 150 + 3 + 60, abs=0.1)
    assert "expected finish 2026-11-30 12:06 UTC (today; staging-bound; 6 imports" in text
    assert "assumed until observed: staging_per_s" in text


def test_observed_throughput_replaces_the_assumptions(
        make_settings: Any, redis_client: redis.Redis) -> None:
    settings = make_settings(redis_url="redis://unused", bulk="always")
    backlog_of(redis_client, 50_000, used=3_000)
    # 500 leads/s staged; 200-byte rows; 2 polls and 30 s per import.
    redis_client.hset(Keys(settings.key_prefix, settings.account).bulk.counters, mapping={
        "staging_per_s": 500, "rows_sent": 30_000, "bytes_sent": 6_000_000, "imports": 3,
        "polls": 6, "settled_imports": 3, "settle_s": 90})
    finish = plan_at(Account(settings, redis_client), NOON).finish
    assert finish.assumed == []
    assert (finish.imports, finish.leads_per_import, finish.calls_per_import) == (3, 18_905, 3)
    assert finish.at == pytest.approx(NOON + 100 + 3 + 30, abs=0.1)


def test_imports_the_quota_cannot_pay_today_go_at_midnight(
        make_settings: Any, redis_client: redis.Redis) -> None:
    settings = make_settings(redis_url="redis://unused", bulk="always")
    backlog_of(redis_client, 50_000, used=9_990)  # 10 calls left, all of them reserve
    plan, text = status_at_noon(settings, redis_client)
    finish = plan["finish"]
    assert plan["bulk_budget"] == 0 and finish["bound"] == "quota"
    assert finish["utc_day"] == "2026-12-01" and finish["days_after_today"] == 1
    assert finish["at"] == pytest.approx(MIDNIGHT + 60, abs=0.1)  # sent at 00:00, settled
    assert "expected finish 2026-12-01 00:01 UTC (tomorrow; quota-bound" in text


def test_a_quota_the_reserve_takes_whole_never_finishes_and_says_so(
        make_settings: Any, redis_client: redis.Redis) -> None:
    settings = make_settings(redis_url="redis://unused", bulk="off", daily_quota=250)
    backlog_of(redis_client, 1_000, used=0)
    plan, text = status_at_noon(settings, redis_client)
    assert plan["expected_finish"] is None and plan["finish"]["bound"] == "never"
    assert "expected finish not at this quota" in text


def test_nothing_waiting_finishes_now(make_settings: Any, redis_client: redis.Redis) -> None:
    settings = make_settings(redis_url="redis://unused")
    plan, text = status_at_noon(settings, redis_client)
    assert plan["expected_finish"] == NOON and plan["finish"]["path"] == "none"
    assert "expected finish nothing waiting" in text


def test_a_small_backlog_in_auto_mode_takes_the_single_path_today(
        make_settings: Any, redis_client: redis.Redis) -> None:
    settings = make_settings(redis_url="redis://unused", bulk="auto")
    backlog_of(redis_client, 370, used=3_000)  # under the threshold, 740 calls fit the budget
    finish = plan_at(Account(settings, redis_client), NOON).finish
    assert finish.path == "single" and finish.bound == "rate" and finish.days_after_today == 0
    assert finish.at == pytest.approx(NOON + 200, abs=0.1)  # 370 leads at 1.85 a second


def test_the_batcher_measures_how_fast_workers_stage(
        make_settings: Any, redis_client: redis.Redis) -> None:
    settings = make_settings(redis_url="redis://unused", bulk="always")
    keys = Keys(settings.key_prefix, settings.account).bulk
    redis_client.zadd(keys.staged, {f"ld_{i}": NOON + i * 0.02 for i in range(600)})
    # No messages: every lead reported lost.
    Batcher(Account(settings, redis_client)).form(NOON + 20)
    rate = float(redis_client.hget(keys.counters, "staging_per_s") or 0)
    assert rate == pytest.approx(600 / (599 * 0.02), rel=1e-3)  # about 50 a second
    assumed = plan_at(Account(settings, redis_client), NOON).finish.assumed
    assert assumed == ["row_bytes", "import_s", "polls_per_import"]  # staging is observed


def test_leads_already_in_an_import_finish_when_it_settles(
        make_settings: Any, redis_client: redis.Redis) -> None:
    settings = make_settings(redis_url="redis://unused", bulk="auto")
    keys = Keys(settings.key_prefix, settings.account).bulk
    backlog_of(redis_client, 10, used=3_000)  # 10 single leads: 5.4 s at 1.85 a second
    redis_client.hset(keys.batch("b1"), mapping={"count": 500, "activity_id": "a1"})
    redis_client.zadd(keys.batches, {"b1": NOON - 5})
    redis_client.hset(keys.counters, mapping={"settled_imports": 2, "settle_s": 80})
    plan = plan_at(Account(settings, redis_client), NOON)
    assert plan.in_imports == 500 and plan.finish.path == "single"
    assert plan.expected_finish == pytest.approx(NOON + 40, abs=0.1)  # the import's 40 s


def plan_at(account: Account, now: float) -> Plan:
    return quota_plan(account, account.limiter, now=now)
