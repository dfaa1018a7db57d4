"""Throughput of the sandbox's sign_up_form with limits off (target: >= 1,000 requests/s on one
core). The sandbox runs in its own process pinned to one core; a client process drives it with
several keep-alive connections (one thread each) for a bounded time.

    /tmp/venv/bin/python tests/benchmarks/bench_sandbox.py [--seconds 10] [--connections 8]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import threading
import time
from typing import Any

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def serve(core: int, ready: Any, stop: Any) -> None:
    """The sandbox process: pinned to `core`, limits off, auto-approve."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})
    from worker.sandbox import SandboxConfig, SandboxServer

    server = SandboxServer(SandboxConfig(rate_limit_per_s=0, daily_quota=0,
                                         token_rate_limit_per_s=0, auto_approve=True)).start()
    ready.send(server.settings_env())
    stop.wait()
    ready.send(server.stats()["sign_up_form"])
    server.stop()


def _post(conn: http.client.HTTPConnection, path: str, body: bytes,
          headers: dict[str, str]) -> tuple[int, bytes]:
    conn.request("POST", path, body=body, headers=headers)
    answer = conn.getresponse()
    return answer.status, answer.read()


def authorize(env: dict[str, str]) -> str:
    host = env["LEADSYNC_TOKEN_URL"].split("/")[2]
    conn = http.client.HTTPConnection(host)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    _, raw = _post(conn, "/oauth2/default/v1/device/authorize",
                   f"client_id={env['LEADSYNC_CLIENT_ID']}&scope=contact_data".encode(), form)
    device = json.loads(raw)["device_code"]
    _, raw = _post(conn, "/oauth2/default/v1/token", (
        f"client_id={env['LEADSYNC_CLIENT_ID']}&device_code={device}"
        f"&grant_type={DEVICE_GRANT}").encode(), form)
    conn.close()
    return str(json.loads(raw)["access_token"])


def drive(env: dict[str, str], token: str, seconds: float, connections: int) -> dict[str, Any]:
    host = env["LEADSYNC_API_BASE_URL"].split("/")[2]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    list_id = env["LEADSYNC_LIST_IDS"]
    counts = [0] * connections
    errors = [0] * connections
    deadline = time.monotonic() + seconds

    def worker(index: int) -> None:
        conn = http.client.HTTPConnection(host)  # keep-alive: one connection per thread
        n = 0
        while time.monotonic() < deadline:
            # Half new contacts, half updates of an earlier one: both paths are measured.
            email = f"c{index}-{n - n % 2}@bench.example"
            body = json.dumps({"email_address": email, "list_memberships": [list_id],
                               "first_name": "Bench"}).encode()
            status, _ = _post(conn, "/v3/contacts/sign_up_form", body, headers)
            if status in (200, 201):
                counts[index] += 1
            else:
                errors[index] += 1
            n += 1
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    return {"requests": sum(counts), "errors": sum(errors), "seconds": round(elapsed, 2),
            "requests_per_s": round(sum(counts) / elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--server-core", type=int, default=0)
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    stop = ctx.Event()
    process = ctx.Process(target=serve, args=(args.server_core, child, stop))
    process.start()
    try:
        env = parent.recv()
        cores = os.cpu_count() or 1
        if hasattr(os, "sched_setaffinity") and cores > 1:
            # The client gets the other core(s), so it does not steal the server's.
            os.sched_setaffinity(0, set(range(cores)) - {args.server_core})
        result = drive(env, authorize(env), args.seconds, args.connections)
        stop.set()
        result["server_counted"] = parent.recv()
    finally:
        stop.set()
        process.join(15)
        if process.is_alive():
            process.terminate()
            process.join()
    result.update(connections=args.connections, server_cores=1, machine_cores=os.cpu_count())
    print(json.dumps(result))
    print(f"sandbox sign_up_form: {result['requests_per_s']:.0f} requests/s on one core "
          f"({args.connections} keep-alive connections, {result['errors']} errors)")


if __name__ == "__main__":
    main()
