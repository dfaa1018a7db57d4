"""The demo's sample leads really contain what its summary will claim."""

from __future__ import annotations

import pytest
import redis

from worker.base.priority import queued
from worker.demo.demo import sample_leads
from worker.leads.enqueue import enqueue_leads


@pytest.mark.redis
@pytest.mark.parametrize("total", [40, 150])
def test_sample_mix_matches_what_enqueue_accepts(total: int, redis_client: redis.Redis) -> None:
    rows, mix = sample_leads(total)
    report = enqueue_leads(rows, redis=redis_client)
    assert report.total == total
    assert report.rejected_count == mix.invalid_rejected > 0
    assert queued(redis_client, "leads") == report.enqueued
    # Exact re-sends share a lead_id; updates (same email, new data) get their own.
    assert len(set(report.lead_ids)) == mix.valid_unique + mix.invalid_unknown_list
    assert report.enqueued - len(set(report.lead_ids)) == mix.duplicates > 0
    assert mix.updates > 0 and mix.invalid_unknown_list > 0
