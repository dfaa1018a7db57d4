"""What `leadsync.resume_parked` costs when many leads are due at once (the quota's 00:00 UTC, or
the first run after a person re-authorized): `--leads` leads parked the way delivery parks them
(taken with their message, then parked for `quota`), then `ParkingLot.resume_due` times against
a private Redis. Checks that every lead is back on a queue list exactly once.

    python tests/benchmarks/bench_resume.py [--leads 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import redis

from worker.embedded_redis import EmbeddedRedis
from worker.idempotency import Ledger
from worker.lead import parse_lead
from worker.parking import QUOTA, ParkingLot
from worker.settings import Settings
from worker.wire import QUEUE, encode_message


def park(settings: Settings, client: redis.Redis, count: int, now: float) -> None:
    ledger, lot = Ledger(settings, client), ParkingLot(settings, client)
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


def one_round(settings: Settings, client: redis.Redis, count: int) -> float:
    client.flushdb()
    now = time.time()
    park(settings, client, count, now)
    lot = ParkingLot(settings, client)
    started = time.perf_counter()
    resumed = lot.resume_due(sending_possible=True, now=now + 20)
    took = time.perf_counter() - started
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
        times = [one_round(settings, client, args.leads) for _ in range(args.rounds)]
        print(f"resume_due of {args.leads} parked leads: median {statistics.median(times):.3f} s "
              f"(runs: {', '.join(f'{t:.3f}' for t in times)}), each queued once")
        client.close()


if __name__ == "__main__":
    main()
