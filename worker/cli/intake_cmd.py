"""`leadsync intake`: the HTTP intake server, and `leadsync intake keys ...` for its API keys."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from worker.base.settings import load_settings
from worker.cli.exit_codes import ExitCode

EXAMPLES = """examples:
  leadsync intake keys create crm                 # an API key for a back end (shown once)
  leadsync intake keys create website --scope form  # a key for an HTML form's _key field
  leadsync intake --host 0.0.0.0 --port 8080      # serve POST /v1/leads (and forms, Google Ads)
  leadsync intake keys list                       # names, scopes, revoked or not; never keys
  leadsync intake keys revoke crm                 # refused (403) from the next request on

  curl -X POST http://127.0.0.1:8080/v1/leads -H "Authorization: Bearer $KEY" \\
       -H 'Content-Type: application/json' -d '{"email": "ada@example.com"}'

exit codes: 0 ok, 2 usage, 3 bad setting, 4 Redis unavailable, 10 bad key name or unknown key.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "intake",
        help="HTTP intake: POST leads (JSON, forms, Google Ads) onto the queue",
        description="Serve the HTTP intake (Starlette on uvicorn): POST /v1/leads puts leads "
        "on the same Redis queue as `leadsync enqueue`, answering 202 only once they are in "
        "Redis. Settings: LEADSYNC_INTAKE_* (README, Configuration).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", help="address to bind (default LEADSYNC_INTAKE_HOST)")
    parser.add_argument("--port", type=int, help="port (default LEADSYNC_INTAKE_PORT)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes (uvicorn workers; each one event loop)")
    parser.add_argument("--access-log", action="store_true",
                        help="log one line per request (paths only, never bodies)")
    parser.set_defaults(handler=run)
    keys = parser.add_subparsers(dest="intake_command", metavar="COMMAND")
    key_parser = keys.add_parser("keys", help="create, list or revoke API keys",
                                 epilog=EXAMPLES,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = key_parser.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="a new key for NAME, printed once")
    create.add_argument("name")
    create.add_argument("--scope", choices=("leads", "form"), default="leads",
                        help="leads: the JSON API (a secret); form: HTML form posts only")
    create.set_defaults(handler=keys_create)
    listing = actions.add_parser("list", help="every key's name, scope and state")
    listing.set_defaults(handler=keys_list)
    revoke = actions.add_parser("revoke", help="refuse NAME's key from now on")
    revoke.add_argument("name")
    revoke.set_defaults(handler=keys_revoke)


def run(args: argparse.Namespace) -> int:
    from worker.intake.server import serve
    from worker.intake.signatures import parse_secrets

    settings = load_settings()  # the server's processes build their own Account
    parse_secrets(settings.intake_webhook_secrets)  # a bad value stops here, exit 3
    host = args.host or settings.intake_host
    port = settings.intake_port if args.port is None else args.port
    print(f"leadsync intake: listening on http://{host}:{port}", file=sys.stderr, flush=True)
    serve(settings, host=host, port=port, workers=args.workers, access_log=args.access_log)
    return int(ExitCode.OK)


def _store() -> Any:
    from worker.account import Account
    from worker.intake.apikeys import ApiKeys

    return ApiKeys(Account.load())


def _redis_call(action: Any) -> Any:
    import redis

    from worker.base.errors import RedisUnavailableError

    try:
        return action()
    except redis.RedisError as exc:  # any Redis trouble: exit 4 with one line, as `dlq`
        raise RedisUnavailableError(f"Redis unavailable: {type(exc).__name__}") from None


def keys_create(args: argparse.Namespace) -> int:
    from worker.intake.apikeys import ApiKeyError

    try:
        key = _redis_call(lambda: _store().create(args.name, args.scope))
    except ApiKeyError as exc:
        print(f"leadsync: {exc}", file=sys.stderr)
        return int(ExitCode.INVALID_INPUT)
    print(key)
    print(f"key {args.name!r} ({args.scope}) created; it is shown only now: store it as a "
          "secret", file=sys.stderr)
    return int(ExitCode.OK)


def keys_list(args: argparse.Namespace) -> int:
    found = _redis_call(lambda: _store().list())
    if not found:
        print("no intake keys (create one: leadsync intake keys create NAME)")
    for info in found:
        created = datetime.fromtimestamp(info.created_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
        state = "revoked" if info.revoked else "active"
        print(f"{info.name:<24} {info.scope:<6} {state:<8} {info.hint}…  created {created}")
    return int(ExitCode.OK)


def keys_revoke(args: argparse.Namespace) -> int:
    from worker.intake.apikeys import ApiKeyError

    try:
        _redis_call(lambda: _store().revoke(args.name))
    except ApiKeyError as exc:
        print(f"leadsync: {exc}", file=sys.stderr)
        return int(ExitCode.INVALID_INPUT)
    print(f"key {args.name!r} revoked")
    return int(ExitCode.OK)
