"""How fast producers can queue leads, against a private redis-server (never the shared one).

Prints, from one run, `enqueue_leads` (validated, batches of 1,000) beside the plain alternative
a producer without leadsync would write: a pipelined LPUSH (one per message) of messages encoded
beforehand, so validation and encoding are the whole difference. Also, without Redis, what
enqueue_leads spends on validating and encoding (`ready_lead` + `batch_messages`, the plain-dict
path for these rows) and what the model's path costs (`prepare` + `encode_message`, taken by
leads that are not plain dicts); and, for scale, one variadic LPUSH per 1,000 pre-encoded
messages (the fastest way to put bytes in the list). Each round runs every variant once, in
turn; rates are the best round's, and the ratio of each round is printed too (the machine is
shared, so the spread says how far to trust one figure). Target: enqueue_leads at least 0.5 of
the pipelined LPUSH's rate.

    python tests/benchmarks/bench_enqueue.py [--leads 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime

import redis

from worker.base.names import LEADS_QUEUE
from worker.demo.embedded_redis import EmbeddedRedis
from worker.leads.enqueue import batch_messages, enqueue_leads, prepare, ready_lead
from worker.leads.lead_fast import received_at_json
from worker.leads.wire import encode_message

BATCH = 1_000


def rows(count: int) -> list[dict[str, object]]:
    return [{"email": f"bench{n}@example.com", "first_name": "Bench", "last_name": f"N{n}",
             "phone": "+1 202 555 0100", "company": "Bench Ltd", "consent": n % 2 == 0,
             "source": "benchmark", "custom_fields": {"lead_score": str(n % 100)}}
            for n in range(count)]


def best_of(repeat: int, run: Callable[[], object]) -> float:
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
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    data = rows(args.leads)
    encoded = [encode_message(prepare(row)) for row in data]
    with EmbeddedRedis() as server:
        client = redis.Redis(port=server.port)

        def enqueue() -> None:
            client.delete(LEADS_QUEUE)
            report = enqueue_leads(data, redis=client)
            assert report.enqueued == args.leads

        def pipelined_lpush() -> None:
            client.delete(LEADS_QUEUE)
            for start in range(0, len(encoded), BATCH):
                pipe = client.pipeline(transaction=False)
                for message in encoded[start:start + BATCH]:
                    pipe.lpush(LEADS_QUEUE, message)
                pipe.execute()

        def variadic_lpush() -> None:
            client.delete(LEADS_QUEUE)
            for start in range(0, len(encoded), BATCH):
                client.lpush(LEADS_QUEUE, *encoded[start:start + BATCH])

        def validate_encode() -> None:
            now = datetime.now(UTC)
            now_json = received_at_json(now)
            for start in range(0, len(data), BATCH):
                batch_messages([ready_lead(row, now, now_json)
                                for row in data[start:start + BATCH]])

        def model_path() -> None:
            for row in data:
                encode_message(prepare(row))

        timings: dict[str, float] = {}
        round_ratios = []
        for _ in range(args.repeat):  # alternate, so drift on a shared machine hits all of them
            this_round = {}
            for name, run in (("enqueue_leads", enqueue), ("pipelined_lpush", pipelined_lpush),
                              ("variadic_lpush", variadic_lpush),
                              ("validate_encode", validate_encode), ("model_path", model_path)):
                seconds = this_round[name] = best_of(1, run)
                timings[name] = min(timings.get(name, seconds), seconds)
            round_ratios.append(round(this_round["pipelined_lpush"]
                                      / this_round["enqueue_leads"], 2))
        client.close()
    rates = {name: round(args.leads / seconds) for name, seconds in timings.items()}
    print(json.dumps({
        "leads": args.leads,
        "per_s_best_of_rounds": rates,
        "enqueue_over_pipelined_lpush": round(rates["enqueue_leads"]
                                              / rates["pipelined_lpush"], 2),
        "enqueue_over_pipelined_lpush_each_round": round_ratios,
        "enqueue_over_variadic_lpush": round(rates["enqueue_leads"]
                                             / rates["variadic_lpush"], 2),
        "validation_share_of_enqueue": round(timings["validate_encode"]
                                             / timings["enqueue_leads"], 2),
    }))


if __name__ == "__main__":
    main()
