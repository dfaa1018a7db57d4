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

from worker.base.errors import RateLimitedLocallyError
from worker.base.scope import Scope
from worker.base.settings import Settings
from worker.delivery.ratelimit import FleetLimiter
from worker.demo.embedded_redis import EmbeddedRedis


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    with EmbeddedRedis() as server:
        client = redis.Redis(port=server.port)
        settings = Settings(_env_file=None, redis_url=server.url)  # type: ignore[call-arg]
        limiter = FleetLimiter(Scope(settings, client))
        calls = 0
        grants: list[float] = []
        deadline = time.perf_counter() + args.seconds
        while time.perf_counter() < deadline:
            try:
                limiter.try_acquire()
                grants.append(time.perf_counter())
            except RateLimitedLocallyError:
                pass
            calls += 1
        client.close()
    # Grants per second between the first and the last grant (n grants span n - 1 intervals).
    spacing_rate = (len(grants) - 1) / (grants[-1] - grants[0]) if len(grants) > 1 else 0.0
    print(json.dumps({"calls_per_s": round(calls / args.seconds), "granted": len(grants),
                      "granted_per_s": round(spacing_rate, 2),
                      "rate_limit_per_s": settings.rate_limit_per_s}))


if __name__ == "__main__":
    main()
