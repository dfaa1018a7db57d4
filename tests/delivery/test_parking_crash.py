"""Resume in batches, cut off half-way: the resumer `kill -9`ed between its steps, then Redis
itself `kill -9`ed (restarted on its AOF) during one. Either way every lead is still in exactly
one place, parked with its message or queued once, and the next run resumes the rest once."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.fixtures.crash_redis import CrashableRedis
from tests.fixtures.ops import wait_for
from tests.fixtures.parked import NOW, each_in_one_place, lead, park, queued_ids
from worker.account import Account
from worker.base.names import LEADS_QUEUE as QUEUE
from worker.base.settings import Settings
from worker.ledger.parking import QUOTA, ParkingLot

pytestmark = pytest.mark.redis
ROOT = Path(__file__).resolve().parents[2]
LEADS = 2000
# The victim: resume_due in steps of 20 leads, paced so that the kill lands between steps
# half-way through the run rather than after it.
VICTIM = """
import sys, time
import redis
from worker.account import Account
from worker.base.settings import Settings

url, now = sys.argv[1], float(sys.argv[2])
lot = Account(Settings(_env_file=None, redis_url=url), redis.Redis.from_url(url)).parking
step = lot._resume_step

def paced(*args, **kwargs):
    reply = step(*args, **kwargs)
    time.sleep(0.02)
    return reply

lot._resume_step = paced
lot.resume_due(sending_possible=True, now=now, batch=20)
"""


def fill(lot: ParkingLot) -> list[str]:
    ids = []
    for n in range(LEADS):
        item = lead(n, "crash")
        park(lot, item, QUOTA)
        ids.append(item.lead_id)
    return ids


def test_a_resumer_killed_between_batches_loses_and_duplicates_nothing(
        make_settings: Any, redis_url: str, redis_client: redis.Redis) -> None:
    settings: Settings = make_settings(redis_url=redis_url)
    lot = Account(settings, redis_client).parking
    ids = fill(lot)
    victim = subprocess.Popen([sys.executable, "-c", VICTIM, redis_url, str(NOW)],
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        wait_for(lambda: redis_client.llen(QUEUE) >= 300 or victim.poll() is not None, 60,
                 "the victim to resume 300 leads")
        victim.kill()
        victim.wait(10)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait(10)
    places = each_in_one_place(redis_client, lot, ids)
    assert places["queued"] >= 300 and places["parked"] > 0, places  # cut off half-way
    assert lot.resume_due(sending_possible=True, now=NOW) == places["parked"]
    assert each_in_one_place(redis_client, lot, ids) == {"queued": LEADS}
    assert sorted(queued_ids(redis_client)) == sorted(ids)


@pytest.fixture
def crash_redis(tmp_path: Path) -> Iterator[CrashableRedis]:
    server = CrashableRedis(tmp_path / "redis").start()
    yield server
    server.stop()


def test_redis_killed_during_a_resume_leaves_each_lead_in_one_place(
        make_settings: Any, crash_redis: CrashableRedis,
        monkeypatch: pytest.MonkeyPatch) -> None:
    settings: Settings = make_settings(redis_url=crash_redis.url)
    client = redis.Redis.from_url(crash_redis.url)
    lot = Account(settings, client).parking
    ids = fill(lot)
    # From here every write is on disk before its reply (the fill's with the first of them):
    # what the kill loses is only what Redis had not answered, so a lead found nowhere
    # afterwards would be resume's fault.
    client.config_set("appendfsync", "always")
    failed: list[BaseException] = []

    mine = Account(settings, redis.Redis.from_url(crash_redis.url)).parking
    step = mine._resume_step

    def paced(*args: Any, **kwargs: Any) -> Any:  # so the kill lands half-way, not after
        reply = step(*args, **kwargs)
        time.sleep(0.02)
        return reply

    monkeypatch.setattr(mine, "_resume_step", paced)

    def resume() -> None:
        try:
            mine.resume_due(sending_possible=True, now=NOW, batch=20)
        except redis.RedisError as exc:  # Redis died under it, as intended
            failed.append(exc)

    resumer = threading.Thread(target=resume)
    resumer.start()
    wait_for(lambda: client.llen(QUEUE) >= 300, 60, "300 leads resumed")
    crash_redis.kill9()
    resumer.join(60)
    assert failed, "the resume finished before Redis was killed: nothing was tested"
    crash_redis.restart()
    client = redis.Redis.from_url(crash_redis.url)
    lot = Account(settings, client).parking
    places = each_in_one_place(client, lot, ids)
    assert places["queued"] >= 300 and places["parked"] > 0, places
    assert lot.resume_due(sending_possible=True, now=NOW) == places["parked"]
    assert each_in_one_place(client, lot, ids) == {"queued": LEADS}
    client.close()
