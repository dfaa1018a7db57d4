"""What `leadsync.resume_parked` costs when many leads are due at once (the quota's 00:00 UTC, or
the first run after a person re-authorized): `--leads` leads parked the way delivery parks them
(taken with their message, then parked for `quota`), then resumed against a private Redis, in
one run both ways, alternated: `ParkingLot.resume_due` (one Lua step per 200 leads) and the
per-lead path it replaced (read the entry, build a message, one ledger step per lead), kept here
only. Checks that every lead is back on a queue list exactly once.

    python tests/benchmarks/bench_resume.py [--leads 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import redis

from worker.account import Account
from worker.base.names import LEADS_QUEUE as QUEUE
from worker.base.redis_text import text
from worker.base.settings import Settings
from worker.demo.embedded_redis import EmbeddedRedis
from worker.leads.lead import parse_lead
from worker.leads.wire import encode_message
from worker.ledger.ledger import Side
from worker.ledger.parking import QUOTA, ParkingLot

LONGEST_STEP_MS: list[float] = []


def park(settings: Settings, client: redis.Redis, count: int, now: float) -> None:
    account = Account(settings, client)
    ledger, lot = account.ledger, account.parking
    for n in range(count):
        lead = parse_lead({"email": f"resume{n}@bench.example", "first_name": "Bench",
                           "last_name": f"N{n}", "company": "Bench Ltd", "consent": True})
        ledger.begin(lead.lead_id, f"task-{n}", encode_message(lead), 600.0, now=now)
        lot.park(lead, QUOTA, now + 10, now=now)


def queued_ids(client: redis.Redis) -> list[str]:
    """Lead ids of every message on the `leads` lists (all priorities)."""
    ids = []
    for key in [QUEUE] + [f"{QUEUE}\x06\x16{step}" for step in (3, 6, 9)]:
        for raw in client.lrange(key, 0, -1):
            ids.append(json.loads(json.loads(raw)["body"])[0][0]["lead_id"])
    return ids


def per_lead(lot: ParkingLot, now: float) -> int:
    """The resume before batches: per due lead, read its entry, build a message from the lead
    and move it with one ledger step (worker/lua/ledger.lua "resume")."""
    resumed = 0
    due_key = lot.due_keys[QUOTA]
    for raw_id in lot.redis.zrangebyscore(due_key, "-inf", now):
        lead_id = text(raw_id)
        raw = lot.redis.hget(lot.keys.parked_index, lead_id)
        assert raw is not None
        moved, _state = lot.ledger.move(
            lead_id, "resume", now=now,
            message=encode_message(parse_lead(json.loads(raw)["lead"])),
            side=Side(lot.keys.parked_index, due_key, None))
        resumed += int(moved)
    return resumed


def one_round(settings: Settings, client: redis.Redis, count: int, way: str) -> float:
    client.flushdb()
    now = time.time()
    park(settings, client, count, now)
    lot = Account(settings, client).parking
    if way == "recount":  # what the hourly (or self-healing) look at every lead costs
        started = time.perf_counter()
        lot.recount()
        return time.perf_counter() - started
    # Steady state: the hourly recount ran earlier (its cost is the "recount" row).
    client.set(lot.keys.parked_recounted, "1", ex=3600)
    client.slowlog_reset()
    started = time.perf_counter()
    if way == "batch":
        resumed = lot.resume_due(sending_possible=True, now=now + 20)
    else:
        resumed = per_lead(lot, now + 20)
    took = time.perf_counter() - started
    if way == "batch":  # how long one step held Redis (from the slow log: steps over 1 ms)
        steps = [e["duration"] for e in client.slowlog_get(100_000)
                 if e["command"].startswith(b"EVALSHA")]
        LONGEST_STEP_MS.append(max(steps, default=0) / 1000)
    ids = queued_ids(client)
    assert resumed == count == len(ids) == len(set(ids)), (resumed, len(ids), len(set(ids)))
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with EmbeddedRedis() as server:
        settings = Settings(_env_file=None, redis_url=server.url)  # type: ignore[call-arg]
        client = redis.Redis.from_url(server.url)
        client.config_set("slowlog-max-len", 100_000)
        client.config_set("slowlog-log-slower-than", 1000)  # µs: the steps, not every command
        times: dict[str, list[float]] = {"per lead": [], "batch": [], "recount": []}
        for _ in range(args.rounds):
            for way, runs in times.items():
                runs.append(one_round(settings, client, args.leads, way))
        for way, runs in times.items():
            median = statistics.median(runs)
            what = "recount" if way == "recount" else f"resume, {way}"
            print(f"{what:<17} {args.leads} parked leads: median {median:6.3f} s "
                  f"({args.leads / median:8,.0f} leads/s; runs "
                  f"{', '.join(f'{t:.3f}' for t in runs)})")
        ratio = statistics.median(times["per lead"]) / statistics.median(times["batch"])
        print(f"batch resume is {ratio:.1f}x faster; the longest batch step held Redis "
              f"{max(LONGEST_STEP_MS):.1f} ms")
        client.close()


if __name__ == "__main__":
    main()
