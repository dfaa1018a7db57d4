"""Single vs bulk delivery of the same backlog of leads without consent, in one run: API calls
per 1,000 leads, drain time, and the Redis memory kept per settled lead.

Each mode gets its own private Redis and sandbox (4 requests/s, leadsync at its default 3.7/s),
two workers (4 processes each) and, for bulk, beat running `leadsync.bulk_import`.

    python tests/benchmarks/bench_backlog.py [--leads 300]

Memory: `MEMORY USAGE` of every settled lead's ledger hash (its message is deleted on
settling), averaged, and the server's `used_memory` growth from before the push to after the
drain divided by the leads (the leads' ledger, the per-minute delivered counts and the
allocator's slack).
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from tests.benchmarks.bench_fleet import API_LIMIT_PER_S, REPO, settings_for, wait_for
from worker.account import Account
from worker.base.keys import Keys
from worker.base.names import LEADS_QUEUE
from worker.bulk.plan import Plan, quota_plan
from worker.demo.demo import _bin, _terminate_group, authorize_device, start_sandbox
from worker.demo.embedded_redis import EmbeddedRedis
from worker.leads.lead import parse_lead
from worker.leads.wire import encode_message, queue_list


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([_bin("celery"), "-A", "worker", *argv], cwd=REPO, env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def drain(mode: str, leads: int, logs: Path) -> dict[str, Any]:
    with EmbeddedRedis() as server:
        sandbox, env = start_sandbox(server.url, lifetime_s=3600.0,
                                     rate_limit_per_s=API_LIMIT_PER_S)
        env["LEADSYNC_RATE_LIMIT_PER_S"] = "3.7"
        env["LEADSYNC_BULK"] = mode
        env["LEADSYNC_ALLOW_VOLATILE_REDIS"] = "true"
        procs: list[subprocess.Popen[bytes]] = []
        try:
            authorize_device(env, logs / f"{mode}-auth.log")
            settings = settings_for(env)
            client = redis.Redis.from_url(server.url)
            for n in range(2):
                procs.append(_spawn(["worker", "--concurrency=4", f"--hostname={mode}{n}@%h",
                                     "--without-mingle", "--without-gossip", "--loglevel=INFO"],
                                    env, logs / f"{mode}-w{n}.log"))
            if mode != "off":
                procs.append(_spawn(["beat", f"--schedule={logs}/{mode}-beat.db"], env,
                                    logs / f"{mode}-beat.log"))
            from worker.celery import make_app

            app = make_app(settings)
            wanted = {f"{mode}{n}@{socket.gethostname()}" for n in range(2)}
            wait_for(lambda: wanted <= {node for reply in app.control.ping(timeout=1.0) or []
                                        for node in reply}, 120, "the workers to answer")
            app.close()
            parsed = [parse_lead({"email": f"backlog{n}@bench.example", "first_name": f"B{n}"})
                      for n in range(leads)]
            keys = Keys(settings.key_prefix, settings.account)
            before_calls = sandbox.stats()["api_requests"]
            before_memory = int(client.info("memory")["used_memory"])
            started = time.monotonic()
            pipe = client.pipeline(transaction=False)
            for lead in parsed:
                pipe.lpush(queue_list(lead), encode_message(lead))
            pipe.execute()
            # What `leadsync status` predicts at this moment (worker/bulk/finish.py).
            pushed_at = time.time()
            predicted = plan_at(Account(settings, client), pushed_at).finish

            def delivered() -> bool:
                pipe = client.pipeline(transaction=False)
                for lead in parsed:
                    pipe.hget(keys.lead_outcome(lead.lead_id), "state")
                return all(state == b"delivered" for state in pipe.execute())

            wait_for(delivered, 3_600, f"{leads} leads to be delivered ({mode})")
            elapsed = time.monotonic() - started
            calls = sandbox.stats()["api_requests"] - before_calls
            pipe = client.pipeline(transaction=False)
            for lead in parsed:
                pipe.memory_usage(keys.lead_outcome(lead.lead_id))
            per_hash = sum(int(m or 0) for m in pipe.execute()) / leads
            grown = (int(client.info("memory")["used_memory"]) - before_memory) / leads
            activities = sandbox.stats()["activities"]
            again: dict[str, Any] = {}
            if mode != "off":  # a second backlog, predicted from what the first one measured
                more = [parse_lead({"email": f"again{n}@bench.example"}) for n in range(leads)]
                started = time.monotonic()
                pipe = client.pipeline(transaction=False)
                for lead in more:
                    pipe.lpush(LEADS_QUEUE, encode_message(lead))
                pipe.execute()
                second_at = time.time()
                second = plan_at(Account(settings, client), second_at).finish
                wait_for(lambda: all(client.hget(keys.lead_outcome(x.lead_id), "state")
                                     == b"delivered" for x in more), 3_600, "the second backlog")
                again = {"elapsed_s": time.monotonic() - started,
                         "predicted_s": (second.at or second_at) - second_at,
                         "assumed": second.assumed}
            client.close()
            return {"calls": calls, "elapsed_s": elapsed, "hash_b": per_hash,
                    "used_b": grown, "activities": activities,
                    "predicted_s": (predicted.at or pushed_at) - pushed_at,
                    "assumed": predicted.assumed, "again": again}
        finally:
            for proc in procs:
                _terminate_group(proc)
            sandbox.stop()


def plan_at(account: Account, now: float) -> Plan:
    return quota_plan(account, account.limiter, now=now)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-backlog-") as logs:
        single = drain("off", args.leads, Path(logs))
        bulk = drain("always", args.leads, Path(logs))
    print(f"backlog of {args.leads} leads without consent, sandbox at "
          f"{API_LIMIT_PER_S:g}/s, leadsync at 3.7/s")
    for name, figures in (("single", single), ("bulk", bulk)):
        print(f"  {name:<6} {figures['calls'] * 1000 / args.leads:8.1f} API calls per 1,000 "
              f"leads, drained in {figures['elapsed_s']:7.1f} s; settled lead hash "
              f"{figures['hash_b']:.0f} B, used_memory growth {figures['used_b']:.0f} B/lead"
              + (f"; {figures['activities']}" if name == "bulk" else ""))
        for label, seen in (("", figures), ("a second backlog: ", figures["again"])):
            if seen:
                print(f"         {label}`status` predicted at the push {seen['predicted_s']:.1f} s,"
                      f" took {seen['elapsed_s']:.1f} s"
                      + (f" (assumed: {', '.join(seen['assumed'])})" if seen["assumed"] else ""))
    print(f"  ratio  calls single/bulk {single['calls'] / max(bulk['calls'], 1):.0f}x, "
          f"drain time single/bulk {single['elapsed_s'] / bulk['elapsed_s']:.1f}x")


if __name__ == "__main__":
    main()

