"""`leadsync sandbox`: run the local Constant Contact until Ctrl-C."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from typing import Any

from worker.cli.exit_codes import ExitCode

EXAMPLES = """examples:
  leadsync sandbox                                   # http://127.0.0.1:8911, CC's own limits
  leadsync sandbox --auto-approve                    # device/login flows approve themselves
  leadsync sandbox --rate-limit-per-s 0 --daily-quota 0     # no limits (benchmarks)
  leadsync sandbox --access-token-lifetime-s 60 --refresh-tokens rotating
  leadsync sandbox --fail-rate 0.1 --latency-ms 200 --drop-rate 0.02   # a bad day
  eval "$(leadsync sandbox --print-env)"             # only print the LEADSYNC_* lines

While it runs (from another shell):
  curl -s localhost:8911/_sandbox/stats
  curl -s -XPOST localhost:8911/_sandbox/faults -d '{"throttle_burst": 5}'
  curl -s -XPOST localhost:8911/_sandbox/faults -d '{"refresh_grace_s": 30}'
  curl -s -XPOST localhost:8911/_sandbox/faults -d '{"timed_out_imports": 1}'  # next import
  curl -s -XPOST localhost:8911/_sandbox/clock -d '{"advance_s": 86400}'
  curl -s -XPOST localhost:8911/_sandbox/device/approve -d '{}'
  curl -s -XPOST localhost:8911/_sandbox/revoke-refresh-tokens
"""


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "sandbox",
        help="run a local Constant Contact (OAuth2 server + V3 contacts API)",
        description="A faithful local Constant Contact: authorization server (code, PKCE, device "
                    "flow, rotating or long-lived refresh tokens, RS256 JWTs) and the V3 "
                    "contacts API with its limits and error shapes. Runs until Ctrl-C.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    add("--port", type=int, default=8911, help="port (default 8911; 0 = any free port)")
    add("--client-id", default="leadsync-sandbox", help="OAuth client id (API key)")
    add("--client-secret", default="sandbox-secret", help="OAuth client secret")
    add("--redirect-uri", action="append", default=[], metavar="URI",
        help="extra registered redirect URI (repeatable); http://127.0.0.1:8765/callback is "
             "always registered and loopback URIs match on any port")
    add("--refresh-tokens", choices=("rotating", "long-lived"), default="rotating",
        help="refresh-token mode of the app (default rotating, as Constant Contact recommends)")
    add("--refresh-grace-s", type=float, default=0.0,
        help="rotation grace period: seconds the refresh token just rotated out still works, "
             "answering with a new pair as Okta does (0-60, default 0: Constant Contact's "
             "setting is unknown)")
    add("--access-token-lifetime-s", type=float, default=86_400.0,
        help="access-token lifetime (default 86400)")
    add("--revoke-access-on-refresh", action="store_true",
        help="a refresh kills the grant's earlier access tokens (default: they live until exp)")
    add("--rate-limit-per-s", type=float, default=4.0,
        help="API requests per second per client (default 4; 0 = off)")
    add("--rate-limit-window", choices=("sliding", "fixed"), default="sliding",
        help="sliding: at most N in any 1-second span (default); fixed: per calendar second")
    add("--token-rate-limit-per-s", type=float, default=1.0,
        help="token endpoint requests per second per client (default 1; 0 = off)")
    add("--daily-quota", type=int, default=10_000,
        help="API requests per client per UTC day (default 10000; 0 = off)")
    add("--auto-approve", action="store_true",
        help="approve device and browser authorizations without a person")
    add("--confirmed-opt-in", action="store_true",
        help="sign_up_form gives new contacts pending_confirmation instead of explicit")
    add("--fail-rate", type=float, default=0.0, help="share of 500/503 answers (0..1)")
    add("--latency-ms", type=float, default=0.0, help="added latency per answer")
    add("--drop-rate", type=float, default=0.0,
        help="share of connections closed without an answer (0..1)")
    add("--print-env", action="store_true",
        help="print the export lines for a sandbox at --host/--port and exit")
    parser.set_defaults(handler=run)


def build_config(args: argparse.Namespace) -> Any:
    from worker.sandbox import SandboxConfig
    from worker.sandbox.config import DEFAULT_REDIRECT_URI

    uris = (DEFAULT_REDIRECT_URI, *[u for u in args.redirect_uri if u != DEFAULT_REDIRECT_URI])
    return SandboxConfig(
        host=args.host, port=args.port, client_id=args.client_id,
        client_secret=args.client_secret, redirect_uris=uris,
        refresh_tokens=args.refresh_tokens, refresh_grace_s=args.refresh_grace_s,
        access_token_lifetime_s=args.access_token_lifetime_s,
        revoke_access_on_refresh=args.revoke_access_on_refresh,
        rate_limit_per_s=args.rate_limit_per_s, rate_limit_window=args.rate_limit_window,
        token_rate_limit_per_s=args.token_rate_limit_per_s, daily_quota=args.daily_quota,
        auto_approve=args.auto_approve, confirmed_opt_in=args.confirmed_opt_in,
        fail_rate=args.fail_rate, latency_ms=args.latency_ms, drop_rate=args.drop_rate,
    )


def export_lines(env: dict[str, str]) -> str:
    return "\n".join(f"export {name}={shlex.quote(value)}" for name, value in env.items())


def run(args: argparse.Namespace) -> int:
    from worker.base.errors import ConfigError
    from worker.sandbox import SandboxServer

    try:
        config = build_config(args)
    except ValueError as exc:
        raise ConfigError(f"sandbox: {exc}") from None
    server = SandboxServer(config)
    if args.print_env:
        server.port = args.port
        print(export_lines(server.settings_env()))
        return int(ExitCode.OK)
    server.start()
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        limits = (f"API {config.rate_limit_per_s:g}/s" if config.rate_limit_per_s else
                  "API unlimited")
        print(f"leadsync sandbox: a local Constant Contact at {server.url} "
              f"({limits}, {config.refresh_tokens} refresh tokens"
              f"{', auto-approve' if config.auto_approve else ''})")
        print("Point a worker at it (sandbox credentials only, never a real secret):\n")
        print(export_lines(server.settings_env()))
        print(f"\nDevice verification page: {server.url}/activate   "
              f"stats: {server.url}/_sandbox/stats\nCtrl-C stops it.", flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()
    print("leadsync sandbox: stopped", file=sys.stderr)
    return int(ExitCode.OK)
