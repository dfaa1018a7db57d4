"""What the reliable fetch costs: messages per second one kombu consumer takes off the `leads`
list (and acknowledges) with kombu's stock Redis transport (BRPOP, then a separate `unacked`
write) and with leadsync's guarded transport (one Lua pop that records `unacked`, plus the
guard's checks), both consuming `leads` and the empty control queue as a worker does. Reported
as a ratio, since the machine is shared: the fetch must stay far above the 4 leads/s the API
takes.

    python tests/benchmarks/bench_fetch.py [--messages 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import redis
from kombu import Connection, Consumer, Queue

from worker.demo.embedded_redis import EmbeddedRedis
from worker.leads.lead import parse_lead
from worker.leads.wire import encode_message

TRANSPORTS = {"kombu": "redis", "leadsync": "worker.broker.guard:GuardedTransport"}


def drain(url: str, transport: str, count: int) -> float:
    """Seconds for one consumer to receive and acknowledge `count` messages."""
    received = 0

    def on_message(_body: Any, message: Any) -> None:
        nonlocal received
        received += 1
        message.ack()

    with Connection(url, transport=transport) as conn:
        consumer = Consumer(conn.default_channel, [Queue("leads"), Queue("leadsync-control")],
                            callbacks=[on_message], accept=["json"])
        consumer.qos(prefetch_count=1)  # as a worker with prefetch 1 takes them
        consumer.consume()
        started = time.perf_counter()
        while received < count:
            conn.drain_events(timeout=5)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    messages = [encode_message(parse_lead({"email": f"bench{n}@leads.example"}))
                for n in range(args.messages)]
    best: dict[str, float] = {}
    with EmbeddedRedis() as server:
        client = redis.Redis(port=server.port)
        for _ in range(args.rounds):  # alternate, so drift on a shared machine hits both
            for name, transport in TRANSPORTS.items():
                client.flushdb()
                client.lpush("leads", *messages)
                seconds = drain(server.url, transport, args.messages)
                best[name] = min(best.get(name, seconds), seconds)
        client.close()
    rates = {name: round(args.messages / seconds) for name, seconds in best.items()}
    print(json.dumps({"messages": args.messages, "per_s_best_of_rounds": rates,
                      "leadsync_over_kombu": round(rates["leadsync"] / rates["kombu"], 2)}))


if __name__ == "__main__":
    main()
