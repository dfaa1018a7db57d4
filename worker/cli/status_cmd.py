"""`leadsync status [--json]` (is it flowing?) and `leadsync health` (for probes).

`health` prints one line per check and exits 0 only when Redis answers and keeps its data
(persistence on, no eviction: worker/base/redis_check.py), a worker answers a ping and the tokens do
not need a person; REDIS_UNAVAILABLE when Redis is down, else UNHEALTHY.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from typing import Any

from celery.utils.nodenames import host_format
from redis.exceptions import RedisError

from worker.account import Account
from worker.auth.access import token_state
from worker.auth.status import token_status
from worker.auth.token_key import ACTIVE_S
from worker.auth.token_record import STATE_TOKEN_KEY_INVALID
from worker.base.errors import LeadsyncError
from worker.base.names import LEADS_QUEUE
from worker.base.redis_check import check_redis
from worker.base.settings import Settings
from worker.bulk.plan import render_bulk
from worker.cli.exit_codes import ExitCode
from worker.leads.enqueue import redis_location
from worker.report.status import gather_status

STATUS_EXAMPLES = """examples:
  leadsync status                 # token, queues, in flight, parked, dead letters, quota
  leadsync status --json | jq .token.state
"""
HEALTH_EXAMPLES = """examples:
  leadsync health                              # Redis, any worker answers, tokens usable
  leadsync health --node 'worker@%h'           # a worker's own probe (%h = this host name)
  leadsync health --no-worker-check            # beat / flower containers
  leadsync health --no-worker-check --no-token-check   # liveness: Redis only

exit codes: 0 healthy, 4 Redis unreachable, 9 unhealthy (no worker answered, reauth_required,
            token_key_invalid, Redis without AOF/RDB or with eviction: see
            LEADSYNC_ALLOW_VOLATILE_REDIS)
"""


def register(subparsers: Any) -> None:
    status = subparsers.add_parser(
        "status", help="token, queues, parked leads, dead letters, quota at a glance",
        description="Show whether leads flow: token state and time left, queue depth (and "
        "backlog leads the bulk stager holds), in flight, retrying, parked (with resume "
        "time), dead letters by reason, requests used today against the quota, delivered in "
        "the last hour, last errors.",
        epilog=STATUS_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument("--json", action="store_true", help="one JSON object (for scripts)")
    status.set_defaults(handler=run_status)

    health = subparsers.add_parser(
        "health", help="exit non-zero when leads cannot flow (for probes)",
        description="One line per check: Redis answers, a worker answers a ping, the tokens "
        "do not need re-authorization.",
        epilog=HEALTH_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    health.add_argument("--no-worker-check", action="store_true",
                        help="skip the worker ping (beat, flower, or before any worker runs)")
    health.add_argument("--no-token-check", action="store_true",
                        help="skip the token state (liveness: a restart cannot fix it)")
    health.add_argument("--node", metavar="NAME",
                        help="ping only this worker node (e.g. 'worker@%%h'); default: any")
    health.add_argument("--timeout", type=float, default=2.0, metavar="S",
                        help="seconds to wait for a worker's pong (default 2)")
    health.set_defaults(handler=run_health)


# --- status -------------------------------------------------------------------------------
def _when(epoch: Any) -> str:
    if not isinstance(epoch, int | float) or not epoch:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float) -> str:
    sign, seconds = ("-" if seconds < 0 else ""), abs(int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{sign}{hours}h {rest // 60:02d}m" if hours else f"{sign}{rest // 60}m {rest % 60:02d}s"


def _value(key: str, value: Any) -> str:
    if key.endswith("_at"):
        return _when(value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {_value(k, v)}" for k, v in value.items()) or "none"
    if isinstance(value, list):
        return f"{len(value)}"
    return "-" if value is None else str(value)


def _token_line(token: dict[str, Any]) -> str:
    state = token.get("state", "?")
    left = token.get("access_token_seconds_left")
    parts = [state]
    if isinstance(left, int | float):
        parts.append(f"access token {'expires in ' + _duration(left) if left > 0 else 'expired'}")
    if token.get("generation") is not None:
        parts.append(f"generation {token['generation']}, {token.get('refresh_count', 0)} "
                     f"refreshes, next refresh {_when(token.get('next_refresh_at'))}")
    if token.get("state_reason"):
        parts.append(f"reason: {token['state_reason']}")
    if state == "not_authorized":
        parts.append("run `leadsync auth device`")
    if token.get("tokens_at_rest") not in (None, "none"):
        parts.append(f"tokens at rest: {token['tokens_at_rest']}")
    for item in token.get("token_key_incidents") or []:
        parts.append(f"LEADSYNC_TOKEN_KEY {item['token_key']} cannot open the tokens since "
                     f"{_when(item['since'])}")
    return "; ".join(parts)


def _held(count: Any) -> str:
    """Backlog leads off their list while the bulk stager stages them: waiting all the same."""
    return f" (+{count} held by the bulk stager)" if isinstance(count, int) and count else ""


def render_status(status: dict[str, Any]) -> str:
    """The text `leadsync status` prints: one line per fact, lists indented below."""
    lines = [f"leadsync status: account {status['account']}, redis {status['redis']}, "
             f"{_when(status['generated_at'])}",
             f"  {'token':<20} {_token_line(status['token'])}",
             f"  {'redis storage':<20} {status['redis_check']['summary']}"
             if "redis_check" in status else "",
             "  {:<20} {}".format("queues", ", ".join(
                 f"{name} {depth} waiting"
                 + (_held(status["leads"].get("bulk_holding")) if name == LEADS_QUEUE else "")
                 for name, depth in status["queues"].items()))]
    if "bulk" in status:
        lines.append(f"  {'bulk imports':<20} {render_bulk(status['bulk'])}")
    leads = status["leads"]
    for key, value in leads.items():
        lines.append(f"  {key.replace('_', ' '):<20} {_value(key, value)}")
        if isinstance(value, list):
            lines.extend(f"    {json.dumps(item, default=str)}" for item in value)
    return "\n".join(line for line in lines if line)


def run_status(args: argparse.Namespace) -> int:
    status = gather_status(Account.load())
    print(json.dumps(status, indent=2, default=str) if args.json else render_status(status))
    return int(ExitCode.OK)


# --- health -------------------------------------------------------------------------------
def _line(ok: bool | None, name: str, detail: str) -> None:
    mark = "skip" if ok is None else ("ok" if ok else "FAIL")
    print(f"{mark:<5} {name:<7} {detail}", flush=True)


def _ping(settings: Settings, node: str | None, timeout_s: float) -> list[str]:
    """Names of the workers that answered a broadcast ping within `timeout_s`."""
    from worker.celery import make_app  # lazily: `leadsync status` needs no Celery app

    app = make_app(settings)
    try:
        with app.connection_for_write() as conn:
            destination = [host_format(node)] if node else None
            replies = app.control.ping(destination=destination, timeout=timeout_s,
                                       connection=conn)
    finally:
        app.close()
    return sorted(name for reply in replies or [] for name in reply)


def run_health(args: argparse.Namespace) -> int:
    account = Account.load()
    settings, redis = account.settings, account.redis
    started = time.monotonic()
    try:
        redis.ping()
    except RedisError as exc:
        _line(False, "redis", f"{redis_location(redis)} unreachable ({type(exc).__name__})")
        return int(ExitCode.REDIS_UNAVAILABLE)
    _line(True, "redis", f"{redis_location(redis)} answered in "
                         f"{(time.monotonic() - started) * 1000:.1f} ms")
    fitness = check_redis(redis, allow_volatile=settings.allow_volatile_redis)
    healthy = not fitness.failing  # no AOF/RDB or eviction: leads and tokens can vanish
    mark = {"ok": "ok", "unknown": "WARN", "volatile_allowed": "WARN"}.get(fitness.state, "FAIL")
    print(f"{mark:<5} {'storage':<7} {fitness.summary()}", flush=True)

    if args.no_worker_check:
        _line(None, "worker", "not checked (--no-worker-check)")
    else:
        try:
            nodes = _ping(settings, args.node, args.timeout)
        except (LeadsyncError, OSError, RedisError) as exc:
            nodes, reason = [], f" ({type(exc).__name__})"
        else:
            reason = ""
        wanted = f"worker {host_format(args.node)}" if args.node else "any worker"
        if nodes:
            _line(True, "worker", f"{len(nodes)} answered: {', '.join(nodes)}")
        else:
            healthy = False
            _line(False, "worker", f"no pong from {wanted} within {args.timeout:g} s{reason}")

    if args.no_token_check:
        _line(None, "token", "not checked (--no-token-check)")
    else:
        tokens = account.tokens
        state = token_state(tokens)
        others = [i for i in tokens.incidents.open(within_s=ACTIVE_S)
                  if i["token_key"] != tokens.incidents.fingerprint]
        if state == "reauth_required":
            healthy = False
            reason = token_status(tokens).get("state_reason") or "invalid_grant"
            _line(False, "token", f"reauth_required ({reason}): run `leadsync auth device`")
        elif state == STATE_TOKEN_KEY_INVALID:
            healthy = False
            _line(False, "token", "token_key_invalid: LEADSYNC_TOKEN_KEY cannot open the stored "
                                  "tokens (leads are parked until it is fixed)")
        elif others:
            healthy = False
            _line(False, "token", f"{state} here, but LEADSYNC_TOKEN_KEY "
                                  f"{', '.join(i['token_key'] for i in others)} of another "
                                  "process cannot open the tokens (in the last minute)")
        elif state == "not_authorized":
            # Not a failure: a fresh deployment must come up so a person can authorize it.
            _line(True, "token", "not_authorized yet: run `leadsync auth device` (not failing)")
        else:
            _line(True, "token", state)
    return int(ExitCode.OK if healthy else ExitCode.UNHEALTHY)
