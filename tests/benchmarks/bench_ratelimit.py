"""Cost of one fleet-limiter decision (one EVALSHA of worker/lua/acquire.lua) against a private
redis-server: calls per second from one process, refused and granted alike. The limiter must be
far cheaper than the API calls it spaces (4 per second), so this shows the headroom.

    python tests/benchmarks/bench_ratelimit.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import time

import redis

from worker.embedded_redis import EmbeddedRedis
from worker.errors import RateLimitedLocallyError
from worker.ratelimit import FleetLimiter
from worker.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    with EmbeddedRedis() as server:
        client = redis.Redis(port=server.port)
        settings = Settings(_env_file=None, redis_url=server.url)  # type: ignore[call-arg]
        limiter = FleetLimiter(settings, client)
        calls = granted = 0
        deadline = time.perf_counter() + args.seconds
        while time.perf_counter() < deadline:
            try:
                limiter.try_acquire()
                granted += 1
            except RateLimitedLocallyError:
                pass
            calls += 1
        client.close()
    print(json.dumps({"calls_per_s": round(calls / args.seconds), "granted": granted,
                      "granted_per_s": round(granted / args.seconds, 2),
                      "rate_limit_per_s": settings.rate_limit_per_s}))


if __name__ == "__main__":
    main()
