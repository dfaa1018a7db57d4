"""How fast producers can queue leads, against a private redis-server (never the shared one).

Measures `enqueue_leads` (validated, pipelined LPUSH in batches of 1,000) and the raw cost of
one validated message (`parse_lead` + `encode_message`), as leads per second, plus the ratio
of the two (how much of the time is validation rather than Redis).

    python tests/benchmarks/bench_enqueue.py [--leads 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import time

import redis

from worker.embedded_redis import EmbeddedRedis
from worker.enqueue import enqueue_leads
from worker.lead import parse_lead
from worker.wire import encode_message


def rows(count: int) -> list[dict[str, object]]:
    return [{"email": f"bench{n}@example.com", "first_name": "Bench", "last_name": f"N{n}",
             "phone": "+1 202 555 0100", "company": "Bench Ltd", "consent": n % 2 == 0,
             "source": "benchmark", "custom_fields": {"lead_score": str(n % 100)}}
            for n in range(count)]


def best_of(repeat: int, run: object) -> float:
    assert callable(run)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = rows(args.leads)
    with EmbeddedRedis() as server:
        client = redis.Redis(port=server.port)

        def enqueue() -> None:
            client.delete("leads")
            report = enqueue_leads(data, redis=client)
            assert report.enqueued == args.leads

        def validate_only() -> None:
            for row in data:
                encode_message(parse_lead(row))

        enqueue_s = best_of(args.repeat, enqueue)
        validate_s = best_of(args.repeat, validate_only)
        client.close()
    print(json.dumps({
        "leads": args.leads,
        "enqueue_leads_s": round(enqueue_s, 3),
        "enqueue_leads_per_s": round(args.leads / enqueue_s),
        "validate_encode_per_s": round(args.leads / validate_s),
        "validation_share_of_enqueue": round(validate_s / enqueue_s, 2),
    }))


if __name__ == "__main__":
    main()
