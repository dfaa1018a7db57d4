"""A bounded burst of HTTP posts from N keep-alive clients (threads, one http.client each).

Used by the done-when tests and tests/benchmarks/bench_intake.py. Only loopback addresses;
the burst stops at its deadline whatever happens, and every answer is kept for the checks.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Answer:
    index: int
    status: int  # 0: no answer (connection failed)
    body: Any
    latency_s: float


def burst(base: str, key: str, payloads: list[Any], *, clients: int = 16,
          deadline_s: float = 300.0, path: str = "/v1/leads",
          on_answer: Callable[[int], None] | None = None) -> list[Answer]:
    """POST each payload once (JSON), spread over `clients` threads; answers by index."""
    url = urlsplit(base)
    assert url.hostname in ("127.0.0.1", "localhost", "::1"), "loopback only"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json",
               "Connection": "keep-alive"}
    answers: list[Answer | None] = [None] * len(payloads)
    bodies = [json.dumps(p).encode() for p in payloads]
    stop_at = time.monotonic() + deadline_s
    lock = threading.Lock()
    done = [0]
    failures: list[Exception] = []

    def run(worker: int) -> None:
        conn: http.client.HTTPConnection | None = None
        for index in range(worker, len(payloads), clients):
            if time.monotonic() > stop_at:
                return
            started = time.perf_counter()
            status, body = 0, None
            for _attempt in range(2):  # one reconnect if the kept-alive socket was closed
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection(url.hostname or "", url.port,
                                                          timeout=60)
                    conn.request("POST", path, bodies[index], headers)
                    response = conn.getresponse()
                    raw = response.read()
                    status = response.status
                    body = json.loads(raw) if raw else None
                    break
                except (OSError, http.client.HTTPException):
                    if conn is not None:
                        conn.close()
                    conn = None
            answers[index] = Answer(index, status, body, time.perf_counter() - started)
            with lock:
                done[0] += 1
                count = done[0]
            if on_answer is not None:
                try:
                    on_answer(count)
                except Exception as exc:  # the caller's chaos step: report it, do not lose sends
                    failures.append(exc)
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, stop_at - time.monotonic()) + 5)
    if failures:
        raise failures[0]
    missing = sum(1 for a in answers if a is None)
    assert missing == 0, f"{missing} request(s) not sent before the {deadline_s:g} s deadline"
    return [a for a in answers if a is not None]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]
