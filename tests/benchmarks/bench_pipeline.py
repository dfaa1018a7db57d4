"""The whole delivery path, leadsync beside the plain alternative, in one run.

One private redis-server, one sandbox with limits off, one worker process (prefork, concurrency
4) at a time: `celery -A worker worker` delivering leads (all with consent: one sign_up_form
call each), then `celery -A tests.benchmarks.bare_celery worker`, a bare Celery task POSTing the
same body. N messages are queued before the worker starts; the rate is taken between the
sandbox's first and last sign_up_form call of the run, so worker start-up is not in it.

Redis commands per lead: INFO commandstats, summed over commands, after the queue was filled and
once every message was delivered and acknowledged, divided by N (the probes this script sends
are subtracted; the worker's start-up commands are in it, spread over N). Round trips per lead:
a second, smaller run per side goes through a counting TCP proxy in front of Redis; one round
trip is a client write that follows a server reply on the same connection (a pipeline counts
once, a blocking poll that times out counts once).

    python tests/benchmarks/bench_pipeline.py [--leads 2000] [--rounds 2] [--trip-leads 300]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import redis
import requests

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from worker.demo.embedded_redis import EmbeddedRedis  # noqa: E402  # after the path is set
from worker.sandbox import SandboxConfig, SandboxServer  # noqa: E402

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
CONCURRENCY = 4


def rows(count: int, tag: str) -> list[dict[str, Any]]:
    return [{"email": f"{tag}{n}@pipeline.example", "first_name": "Pipe", "last_name": f"N{n}",
             "phone": "+1 202 555 0100", "company": "Bench Ltd", "consent": True,
             "source": "benchmark"} for n in range(count)]


class TripProxy:
    """TCP proxy in front of Redis that counts request/reply round trips."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.trips = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream_port))
            state = {"last": "reply"}
            threading.Thread(target=self._pump, args=(client, server, state, True),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, state, False),
                             daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, state: dict[str, str],
              request: bool) -> None:
        try:
            while data := source.recv(65536):
                with self._lock:
                    if request and state["last"] == "reply":
                        self.trips += 1
                    state["last"] = "request" if request else "reply"
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._listener.close()


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
             tag: str, proxy: TripProxy | None) -> dict[str, float]:
    client = redis.Redis(port=server.port)
    client.flushdb()
    url = server.url
    if side == "leadsync":
        fill_leadsync(sandbox, url, client, count, tag)
    else:
        token = fill_bare(sandbox, url, count, tag)
    worker_url = f"redis://127.0.0.1:{proxy.port}/0" if proxy else url
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
    trips_before = proxy.trips if proxy else 0
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", app, "worker", f"--concurrency={CONCURRENCY}",
         "--without-mingle", "--without-gossip", "--loglevel=WARNING",
         f"--hostname={side}-{tag}@%h"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        first = last = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            done = sandbox.stats()["sign_up_form"]["calls"] - calls_before
            now = time.perf_counter()
            if done >= 1 and first is None:
                first = now
            if done >= count:
                last = now
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
        trips = (proxy.trips - trips_before) if proxy else 0
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        client.close()
    return {"per_s": (count - 1) / (last - first), "commands_per_lead": used / count,
            "round_trips_per_lead": trips / count}


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
        if args.trip_leads:
            proxy = TripProxy(server.port)
            for side in ("leadsync", "bare"):
                got = run_side(side, sandbox, server, args.trip_leads, f"t{side}", proxy)
                result[side]["round_trips_per_lead"] = got["round_trips_per_lead"]
            proxy.close()
    shown = {side: {k: round(v, 1) for k, v in figures.items()}
             for side, figures in result.items()}
    print(json.dumps({
        "leads": args.leads, "concurrency": CONCURRENCY, **shown,
        "leadsync_over_bare_per_s": round(result["leadsync"]["per_s"]
                                          / result["bare"]["per_s"], 2),
    }))


if __name__ == "__main__":
    main()
