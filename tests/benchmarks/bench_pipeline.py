"""The whole delivery path, leadsync beside the plain alternative, in one run.

One private redis-server, one sandbox with limits off, one worker process (prefork, concurrency
4) at a time: `celery -A worker worker` delivering leads (all with consent: one sign_up_form
call each), then `celery -A tests.benchmarks.bare_celery worker`, a bare Celery task POSTing the
same body. N messages are queued before the worker starts; the rate is taken between the
sandbox's first and last sign_up_form call of the run, so worker start-up is not in it.

Redis commands per lead, two ways. `commands_per_lead`: what Redis executed, INFO commandstats
summed over commands (a script's own calls included), after the queue was filled and once every
message was delivered and acknowledged, divided by N (the probes this script sends are
subtracted; the worker's start-up commands are in it, spread over N). `sent_commands_per_lead`
and `round_trips_per_lead`: a second, smaller run per side goes through a counting TCP proxy in
front of Redis, which parses what clients send (a script call is one command, a pipeline of n
is n) and counts a round trip for each client write that follows a server reply on the same
connection (a pipeline counts once, a blocking poll that times out counts once).
`worker_cpu_ms_per_lead`: user + system CPU of the worker's processes (main process and pool)
between the first and the last delivery, per lead: unlike leads/s it hardly moves with the
machine's load (the best of the rounds is shown).

    python tests/benchmarks/bench_pipeline.py [--leads 2000] [--rounds 2] [--trip-leads 300]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis
import requests

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.fixtures.redis_proxy import CountingProxy  # noqa: E402  # after the path is set
from worker.demo.embedded_redis import EmbeddedRedis  # noqa: E402
from worker.sandbox import SandboxConfig, SandboxServer  # noqa: E402

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
CONCURRENCY = 4


def rows(count: int, tag: str) -> list[dict[str, Any]]:
    return [{"email": f"{tag}{n}@pipeline.example", "first_name": "Pipe", "last_name": f"N{n}",
             "phone": "+1 202 555 0100", "company": "Bench Ltd", "consent": True,
             "source": "benchmark"} for n in range(count)]


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and its children now running (the pool)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for proc in [pid, *children(pid)]:
        try:
            fields = Path(f"/proc/{proc}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def children(pid: int) -> list[int]:
    try:
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(child) for child in found]


def commands(client: redis.Redis) -> int:
    stats: Any = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


def authorize(sandbox: SandboxServer) -> dict[str, Any]:
    env = sandbox.settings_env()
    device = requests.post(env["LEADSYNC_DEVICE_AUTHORIZATION_URL"], timeout=10, data={
        "client_id": env["LEADSYNC_CLIENT_ID"], "scope": "contact_data offline_access"}).json()
    answer = requests.post(env["LEADSYNC_TOKEN_URL"], timeout=10, data={
        "client_id": env["LEADSYNC_CLIENT_ID"], "device_code": device["device_code"],
        "grant_type": DEVICE_GRANT})
    answer.raise_for_status()
    body: dict[str, Any] = answer.json()
    return body


def leadsync_env(sandbox: SandboxServer, url: str) -> dict[str, str]:
    return {**sandbox.settings_env(), "LEADSYNC_REDIS_URL": url,
            "LEADSYNC_RATE_LIMIT_PER_S": "100000", "LEADSYNC_DAILY_QUOTA": "100000000"}


def fill_leadsync(sandbox: SandboxServer, url: str, client: redis.Redis, count: int,
                  tag: str) -> None:
    from worker.account import Account
    from worker.auth.grant import store_authorization
    from worker.auth.oauth_client import TokenResponse
    from worker.base.settings import load_settings
    from worker.leads.enqueue import enqueue_leads

    env = leadsync_env(sandbox, url)
    settings = load_settings(_env_file=None, **{k.removeprefix("LEADSYNC_").lower(): v
                                                 for k, v in env.items()})
    body = authorize(sandbox)
    store_authorization(Account(settings, client).tokens, TokenResponse(
        access_token=body["access_token"], refresh_token=body.get("refresh_token"),
        expires_in=body.get("expires_in"), scope=body.get("scope"),
        token_type=body.get("token_type", "Bearer"), received_at=time.time()))
    assert enqueue_leads(rows(count, tag), redis=client).enqueued == count


def fill_bare(sandbox: SandboxServer, url: str, count: int, tag: str) -> str:
    from celery import Celery

    from worker.delivery.contact_body import sign_up_form_body
    from worker.leads.enqueue import prepare

    token = str(authorize(sandbox)["access_token"])
    list_ids = [sandbox.settings_env()["LEADSYNC_LIST_IDS"]]
    producer = Celery("bare", broker=url)
    with producer.connection_for_write() as conn, producer.producer_or_acquire() as _:
        for row in rows(count, tag):
            producer.send_task("bare.sign_up", args=[sign_up_form_body(prepare(row), list_ids,
                                                                       {})], connection=conn)
    producer.close()
    return token


def run_side(side: str, sandbox: SandboxServer, server: EmbeddedRedis, count: int,
             tag: str, proxy: CountingProxy | None) -> dict[str, float]:
    client = redis.Redis(port=server.port)
    client.flushdb()
    url = server.url
    if side == "leadsync":
        fill_leadsync(sandbox, url, client, count, tag)
    else:
        token = fill_bare(sandbox, url, count, tag)
    worker_url = proxy.url if proxy else url
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("LEADSYNC_")}
    if side == "leadsync":
        env = {**base_env, **leadsync_env(sandbox, worker_url), "PYTHONPATH": str(REPO)}
        app = "worker"
    else:
        env = {**base_env, "BARE_BROKER_URL": worker_url, "PYTHONPATH": str(REPO),
               "BARE_API_BASE_URL": sandbox.settings_env()["LEADSYNC_API_BASE_URL"],
               "BARE_TOKEN": token}
        app = "tests.benchmarks.bare_celery"
    calls_before = sandbox.stats()["sign_up_form"]["calls"]
    commands_before = commands(client)
    mark = proxy.snapshot() if proxy else 0
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", app, "worker", f"--concurrency={CONCURRENCY}",
         "--without-mingle", "--without-gossip", "--loglevel=WARNING",
         f"--hostname={side}-{tag}@%h"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        first = last = None
        cpu_first = cpu_last = 0.0
        done_first = 0
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            done = sandbox.stats()["sign_up_form"]["calls"] - calls_before
            now = time.perf_counter()
            if done >= 1 and first is None:
                first, cpu_first, done_first = now, cpu_s(worker.pid), done
            if done >= count:
                last, cpu_last = now, cpu_s(worker.pid)
                break
            time.sleep(0.005)
        assert first is not None and last is not None, f"{side}: not delivered in time"
        probes = 0
        while True:  # every message acknowledged (leadsync acks after its bookkeeping)
            probes += 2
            if client.llen("celery" if side == "bare" else "leads") == 0 \
                    and client.hlen("unacked") == 0:
                break
            assert time.monotonic() < deadline, f"{side}: messages left unacknowledged"
            time.sleep(0.05)
        used = commands(client) - commands_before - probes
        trips = proxy.since(mark) if proxy else []  # the probes go around the proxy
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        client.close()
    return {"per_s": (count - 1) / (last - first), "commands_per_lead": used / count,
            "round_trips_per_lead": len(trips) / count,
            "sent_commands_per_lead": sum(len(trip) for trip in trips) / count,
            "worker_cpu_ms_per_lead": 1000 * (cpu_last - cpu_first) / (count - done_first)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--trip-leads", type=int, default=300)
    args = parser.parse_args()
    config = SandboxConfig(rate_limit_per_s=0, daily_quota=0, token_rate_limit_per_s=0,
                           auto_approve=True)
    result: dict[str, dict[str, float]] = {"leadsync": {}, "bare": {}}
    with EmbeddedRedis() as server, SandboxServer(config) as sandbox:
        for round_no in range(args.rounds):  # alternate: drift on a shared machine hits both
            for side in ("leadsync", "bare"):
                got = run_side(side, sandbox, server, args.leads, f"r{round_no}{side}", None)
                best = result[side]
                best["per_s"] = max(best.get("per_s", 0.0), got["per_s"])
                best["commands_per_lead"] = got["commands_per_lead"]
                best["worker_cpu_ms_per_lead"] = min(best.get("worker_cpu_ms_per_lead", 1e9),
                                                     got["worker_cpu_ms_per_lead"])
        if args.trip_leads:
            proxy = CountingProxy(server.port)
            for side in ("leadsync", "bare"):
                got = run_side(side, sandbox, server, args.trip_leads, f"t{side}", proxy)
                result[side]["round_trips_per_lead"] = got["round_trips_per_lead"]
                result[side]["sent_commands_per_lead"] = got["sent_commands_per_lead"]
            proxy.close()
    shown = {side: {k: round(v, 1) for k, v in figures.items()}
             for side, figures in result.items()}
    print(json.dumps({
        "leads": args.leads, "concurrency": CONCURRENCY, **shown,
        "leadsync_over_bare_per_s": round(result["leadsync"]["per_s"]
                                          / result["bare"]["per_s"], 2),
        "bare_over_leadsync_cpu": round(result["bare"]["worker_cpu_ms_per_lead"]
                                        / result["leadsync"]["worker_cpu_ms_per_lead"], 2),
    }))


if __name__ == "__main__":
    main()
