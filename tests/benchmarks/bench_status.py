"""What `leadsync status` and `leadsync dlq list` cost as dead letters and parked leads pile up:
each command run in-process (the CLI's own code, output discarded) against a private Redis
holding no dead letter, then `--letters` of them (plus a few malformed entries), then also
`--parked` parked leads (parked the way delivery parks them: taken, then parked for `quota`,
`reauth` or `token_key`). Printed as milliseconds and as the ratio to the empty case, since the
machine is shared: answering from counters and pages, the ratio stays near 1; reading and
decoding every letter or parked lead, it grows with the count.

    python tests/benchmarks/bench_status.py [--letters 20000] [--parked 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import time

import redis

from worker.account import Account
from worker.base.keys import Keys
from worker.base.settings import Settings
from worker.cli import main as cli_main
from worker.demo.embedded_redis import EmbeddedRedis
from worker.leads.lead import parse_lead
from worker.leads.wire import encode_message
from worker.ledger.deadletter import DeadLetter
from worker.ledger.parking import QUOTA, REAUTH, TOKEN_KEY

REASONS = ("http_400", "invalid_lead", "retries_exhausted", "http_404")
COMMANDS = {"status": ["status", "--json"], "dlq list": ["dlq", "list"]}


def fill(settings: Settings, client: redis.Redis, count: int) -> None:
    """`count` dead letters written the way delivery writes them, and 50 malformed entries."""
    store = Account(settings, client).dead_letters
    now = time.time()
    for n in range(count):
        store.add(DeadLetter(
            lead_id=f"ld_bench{n:08d}", reason=f"Constant Contact said no ({n})",
            reason_code=REASONS[n % len(REASONS)], attempts=n % 5, last_status=400,
            first_seen=now - 3600, dead_at=now - count + n,
            lead={"email": f"someone{n}@bench.example", "first_name": "Bench",
                  "lead_id": f"ld_bench{n:08d}"}))
    keys = Keys(settings.key_prefix, settings.account)
    for n in range(50):
        client.rpush(keys.malformed, json.dumps({"reason": "not JSON", "at": now,
                                                 "raw": f"garbage {n}"}))


def park(settings: Settings, client: redis.Redis, count: int) -> None:
    """`count` leads parked as delivery parks them: taken (the message kept), then parked."""
    account = Account(settings, client)
    ledger, lot = account.ledger, account.parking
    now = time.time()
    reasons = (QUOTA, REAUTH, TOKEN_KEY)
    for n in range(count):
        lead = parse_lead({"email": f"parked{n}@bench.example", "first_name": "Bench",
                           "last_name": f"N{n}", "company": "Bench Ltd", "consent": True})
        ledger.begin(lead.lead_id, f"task-{n}", encode_message(lead), 600.0, now=now)
        reason = reasons[n % len(reasons)]
        lot.park(lead, reason, now + 86_400 if reason == QUOTA else now, now=now)


def timed(argv: list[str], rounds: int) -> float:
    """Median milliseconds of `leadsync <argv>` run in this process."""
    samples = []
    for _ in range(rounds):
        out = io.StringIO()
        started = time.perf_counter()
        with contextlib.redirect_stdout(out):
            code = cli_main(argv)
        samples.append((time.perf_counter() - started) * 1000)
        assert code == 0, out.getvalue()[-500:]
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--letters", type=int, default=20_000)
    parser.add_argument("--parked", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with EmbeddedRedis() as server:
        os.environ["LEADSYNC_REDIS_URL"] = server.url
        settings = Settings(_env_file=None, redis_url=server.url)  # type: ignore[call-arg]
        client = redis.Redis.from_url(server.url)
        empty = {name: timed(argv, args.rounds) for name, argv in COMMANDS.items()}
        started = time.perf_counter()
        fill(settings, client, args.letters)
        print(f"wrote {args.letters} dead letters in {time.perf_counter() - started:.1f} s")
        full = {name: timed(argv, args.rounds) for name, argv in COMMANDS.items()}
        started = time.perf_counter()
        park(settings, client, args.parked)
        print(f"parked {args.parked} leads in {time.perf_counter() - started:.1f} s")
        both = {name: timed(argv, args.rounds) for name, argv in COMMANDS.items()}
        for name in COMMANDS:
            print(f"leadsync {name:<9} empty {empty[name]:8.1f} ms   "
                  f"{args.letters} letters {full[name]:8.1f} ms   "
                  f"ratio {full[name] / empty[name]:6.1f}x   "
                  f"+ {args.parked} parked {both[name]:8.1f} ms   "
                  f"ratio {both[name] / empty[name]:6.1f}x")
        client.close()


if __name__ == "__main__":
    main()
