"""How fast one intake process accepts leads, beside `enqueue_leads` in-process, in one run.

Starts a private redis-server and one `python -m worker intake` process (uvicorn, one event
loop), creates a key with the rate limit out of the way, then measures:
  - `enqueue_leads` in-process (the plain alternative: validation + pipelined LPUSH),
  - single-lead POSTs from N keep-alive clients (client processes x threads),
  - 100-lead batch POSTs,
as leads/s accepted (202) with p50/p99 request latency, and each as a ratio of enqueue_leads.
The clients run on the same machine and take CPU from the server: read the figures as a floor.

    python tests/benchmarks/bench_intake.py [--singles 10000] [--batches 200] [--clients 16]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis
import requests

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.intake.load import Answer, burst, percentile  # noqa: E402  # after the path fix
from worker.base.priority import queued as queue_length  # noqa: E402
from worker.base.scope import Scope  # noqa: E402
from worker.base.settings import load_settings  # noqa: E402
from worker.demo.embedded_redis import EmbeddedRedis, free_port  # noqa: E402
from worker.intake.apikeys import ApiKeys  # noqa: E402
from worker.leads.enqueue import enqueue_leads  # noqa: E402


def lead(n: int, tag: str) -> dict[str, Any]:
    return {"email": f"{tag}{n}@bench.example", "first_name": "Bench", "last_name": f"N{n}",
            "phone": "+1 202 555 0100", "company": "Bench Ltd", "consent": n % 2 == 0,
            "source": "benchmark"}


def _client_share(args: tuple[str, str, list[Any], int]) -> list[tuple[int, float, int]]:
    base, key, payloads, threads = args
    answers = burst(base, key, payloads, clients=threads, deadline_s=600)
    leads = [len(p) if isinstance(p, list) else 1 for p in payloads]
    return [(a.status, a.latency_s, leads[a.index]) for a in answers]


def run_posts(base: str, key: str, payloads: list[Any], procs: int, threads: int
              ) -> tuple[float, list[Answer | tuple[int, float, int]]]:
    shares = [(base, key, payloads[i::procs], threads) for i in range(procs)]
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(procs) as pool:
        results = pool.map(_client_share, shares)
    elapsed = time.perf_counter() - started
    return elapsed, [item for share in results for item in share]


def report(name: str, elapsed: float, results: list[Any], baseline: float) -> None:
    accepted = sum(n for status, _, n in results if status == 202)
    others = sum(1 for status, _, _ in results if status != 202)
    latencies = [lat * 1000 for _, lat, _ in results]
    rate = accepted / elapsed
    print(f"{name:<34} {rate:>9,.0f} leads/s  p50 {percentile(latencies, 0.5):6.1f} ms  "
          f"p99 {percentile(latencies, 0.99):6.1f} ms  ratio {rate / baseline:5.3f}"
          f"  ({len(results)} requests, {others} not 202)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--singles", type=int, default=10_000)
    parser.add_argument("--batches", type=int, default=200, help="100-lead batches to post")
    parser.add_argument("--clients", type=int, default=16, help="keep-alive connections")
    parser.add_argument("--client-procs", type=int, default=2)
    args = parser.parse_args()
    threads = max(1, args.clients // args.client_procs)
    with EmbeddedRedis() as server:
        client = redis.Redis(port=server.port)
        settings = load_settings(_env_file=None, redis_url=server.url,
                                 intake_rate_limit_per_s=1e6, intake_rate_burst=1_000_000)
        key = ApiKeys(Scope(settings, client)).create("bench")
        port = free_port()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("LEADSYNC_")},
               "LEADSYNC_REDIS_URL": server.url, "LEADSYNC_INTAKE_RATE_LIMIT_PER_S": "1000000",
               "LEADSYNC_INTAKE_RATE_BURST": "1000000", "PYTHONPATH": str(REPO),
               "LEADSYNC_LOG_LEVEL": "WARNING"}
        proc = subprocess.Popen([sys.executable, "-m", "worker", "intake", "--port", str(port)],
                                env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if requests.get(base + "/healthz", timeout=1).ok:
                        break
                except requests.ConnectionError:
                    pass
                assert time.monotonic() < deadline and proc.poll() is None, "intake did not start"
                time.sleep(0.1)

            data = [lead(n, "e") for n in range(args.singles)]
            started = time.perf_counter()
            done = enqueue_leads(data, redis=client)
            enqueue_s = time.perf_counter() - started
            baseline = done.enqueued / enqueue_s
            client.delete("leads")
            print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
                  f"{args.clients} clients ({args.client_procs} processes x {threads} threads)")
            print(f"{'enqueue_leads in-process':<34} {baseline:>9,.0f} leads/s  "
                  f"({done.enqueued} leads in {enqueue_s:.2f} s)  ratio 1.000")

            singles = [lead(n, "s") for n in range(args.singles)]
            elapsed, results = run_posts(base, key, singles, args.client_procs, threads)
            report("POST /v1/leads, one lead each", elapsed, results, baseline)

            batches = [[lead(b * 100 + n, "b") for n in range(100)] for b in range(args.batches)]
            elapsed, results = run_posts(base, key, batches, args.client_procs, threads)
            report("POST /v1/leads, 100-lead batches", elapsed, results, baseline)
            queued = queue_length(client, "leads")
            print(f"queue holds {queued} leads (expected {args.singles + 100 * args.batches})")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            client.close()


if __name__ == "__main__":
    main()
