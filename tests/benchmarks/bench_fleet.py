"""How much of Constant Contact's 4 requests/s a fleet of four workers uses through the shared
limiter (leadsync's default 3.7/s), and how many 429s the sandbox answered on the way. Printed,
not asserted: on a loaded machine requests that left the limiter evenly spaced can arrive
bunched (a 429, retried without spending budget), and the share falls when the workers cannot
keep up. tests/delivery/test_fleet.py asserts the invariants (nothing lost, no budget spent).

    python tests/benchmarks/bench_fleet.py [--leads 200] [--workers 4] [--pool prefork|threads]

Figures (one run): share = API requests / elapsed / 4; the target is about 0.92 (3.7 of 4)
with 0 throttled 429s on an idle machine.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

from worker.account import Account
from worker.base.settings import Settings, load_settings
from worker.demo.demo import _bin, _terminate_group, authorize_device, start_sandbox
from worker.demo.embedded_redis import EmbeddedRedis
from worker.leads.lead import parse_lead
from worker.leads.wire import encode_message, queue_list

REPO = Path(__file__).resolve().parents[2]
API_LIMIT_PER_S = 4.0


def settings_for(env: dict[str, str]) -> Settings:
    return load_settings(_env_file=None, **{
        key.removeprefix("LEADSYNC_").lower(): value for key, value in env.items()
        if key.startswith("LEADSYNC_")})


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.2)


def run(leads: int, workers: int, pool: str, logs: Path) -> None:
    with EmbeddedRedis() as server:
        sandbox, env = start_sandbox(server.url, lifetime_s=3600.0,
                                     rate_limit_per_s=API_LIMIT_PER_S)
        default_rate = Settings.model_fields["rate_limit_per_s"].default
        env["LEADSYNC_RATE_LIMIT_PER_S"] = f"{default_rate:g}"
        procs: list[subprocess.Popen[bytes]] = []
        try:
            authorize_device(env, logs / "auth-device.log")
            settings = settings_for(env)
            client = redis.Redis.from_url(server.url)
            for n in range(workers):
                log = (logs / f"w{n}.log").open("wb")
                procs.append(subprocess.Popen(
                    [_bin("celery"), "-A", "worker", "worker", f"--pool={pool}",
                     "--concurrency=4",
                     f"--hostname=w{n}@%h", "--without-mingle", "--without-gossip",
                     "--queues=leads", "--loglevel=INFO"],
                    cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True))
            from worker.celery import make_app

            app = make_app(settings)
            wanted = {f"w{n}@{socket.gethostname()}" for n in range(workers)}
            wait_for(lambda: wanted <= {node for reply in app.control.ping(timeout=1.0) or []
                                        for node in reply}, 120, "the workers to answer")
            app.close()
            parsed = [parse_lead({"email": f"bench{n}@fleet.example", "consent": True})
                      for n in range(leads)]
            ledger = Account(settings, client).ledger
            before = sandbox.stats()["api_requests"]
            started = time.monotonic()
            pipe = client.pipeline(transaction=False)
            for lead in parsed:
                pipe.lpush(queue_list(lead), encode_message(lead))
            pipe.execute()
            wait_for(lambda: all(ledger.get(lead.lead_id).get("state") == "delivered"
                                 for lead in parsed), 600, f"{leads} leads to be delivered")
            elapsed = time.monotonic() - started
            stats = sandbox.stats()
            requests = stats["api_requests"] - before
            share = requests / elapsed / API_LIMIT_PER_S
            throttled = stats["throttled_429"]
            print(f"fleet: {workers} workers ({pool} x 4), {leads} leads at leadsync's "
                  f"{default_rate:g}/s against the sandbox's {API_LIMIT_PER_S:g}/s")
            print(f"  {requests} API requests in {elapsed:.1f} s = {requests / elapsed:.2f}/s")
            print(f"  share of the 4/s used: {share:.3f} (ideal {default_rate / 4:.3f})")
            print(f"  429 throttled: {throttled['throttled']}, "
                  f"429 quota_exceeded: {throttled['quota_exceeded']}")
            client.close()
        finally:
            for proc in procs:
                _terminate_group(proc)
            sandbox.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=200)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--pool", choices=("prefork", "threads"), default="prefork")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as logs:
        run(args.leads, args.workers, args.pool, Path(logs))


if __name__ == "__main__":
    main()
