"""`leadsync flower`: Flower for this app, never served to the network without credentials.

Plain `celery -A worker flower` listens on every interface and answers without a password unless
told otherwise. This wrapper decides the address first: with credentials (FLOWER_BASIC_AUTH or
Flower's OAuth via FLOWER_AUTH) Flower runs as asked; without them it listens on 127.0.0.1 only,
and a request for any other address is refused with one line. Then it becomes
`celery -A worker flower` (exec: same process, so signals and exit codes are Flower's).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from worker.base.errors import ConfigError

LOOPBACK = "127.0.0.1"
EXAMPLES = """examples:
  leadsync flower                                   # no credentials: 127.0.0.1:5555 only
  FLOWER_BASIC_AUTH=ops:s3cret leadsync flower      # all interfaces, basic auth required
  FLOWER_BASIC_AUTH=ops:s3cret leadsync flower --address 10.0.0.5 --port 8080
  leadsync flower -- --url_prefix=flower            # anything after -- goes to Flower

Flower also reads FLOWER_PORT, FLOWER_ADDRESS and its other FLOWER_* variables; credentials are
never taken as arguments (ps shows them): set FLOWER_BASIC_AUTH=user:password[,user2:pw2].
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "flower", help="Flower (task monitor): 127.0.0.1 only unless FLOWER_BASIC_AUTH is set",
        description=__doc__, epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--address", help="interface to listen on (default: all interfaces "
                        "with credentials, 127.0.0.1 without)")
    parser.add_argument("--port", type=int, help="port (default FLOWER_PORT, else 5555)")
    parser.add_argument("flower_args", nargs="*", metavar="-- FLOWER_OPTION",
                        help="more Flower options (after --), e.g. --url_prefix=flower")
    parser.set_defaults(handler=run)


def _has_credentials(env: Mapping[str, str], extra: Sequence[str]) -> bool:
    basic = env.get("FLOWER_BASIC_AUTH", "").strip()
    if basic:
        for pair in basic.split(","):
            user, sep, password = pair.partition(":")
            if not (user.strip() and sep and password):
                raise ConfigError("FLOWER_BASIC_AUTH: expected user:password[,user2:password2]")
        return True
    oauth = env.get("FLOWER_AUTH", "").strip() or any(
        arg.startswith("--auth=") for arg in extra)
    return bool(oauth)


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def flower_argv(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[list[str], str]:
    """The `celery ... flower` command line to exec, and a notice for stderr (may be empty)."""
    extra = list(args.flower_args)
    for arg in extra:
        if arg.startswith(("--basic_auth", "--basic-auth")):
            raise ConfigError("flower: pass credentials as FLOWER_BASIC_AUTH, not as an argument "
                              "(every user of this machine can read arguments with ps)")
        if arg.startswith("--address"):
            raise ConfigError("flower: use `leadsync flower --address ADDRESS` (before --)")
    address = args.address or env.get("FLOWER_ADDRESS") or None
    notice = ""
    unix_socket = env.get("FLOWER_UNIX_SOCKET") or any(
        a.startswith(("--unix_socket", "--unix-socket")) for a in extra)
    if not _has_credentials(env, extra) and not unix_socket:
        if address is None:
            address = LOOPBACK
            notice = ("leadsync: FLOWER_BASIC_AUTH is not set: Flower listens on 127.0.0.1 "
                      "only (set FLOWER_BASIC_AUTH=user:password to serve it on the network)")
        elif not _is_loopback(address):
            raise ConfigError(
                f"FLOWER_BASIC_AUTH is not set: refusing to serve Flower on {address} without "
                "credentials; set FLOWER_BASIC_AUTH=user:password, or listen on 127.0.0.1")
    argv = [sys.executable, "-m", "celery", "-A", "worker", "flower"]
    if address is not None:
        argv.append(f"--address={address}")
    if args.port is not None:
        argv.append(f"--port={args.port}")
    return argv + extra, notice


def run(args: argparse.Namespace) -> int:
    argv, notice = flower_argv(args, os.environ)
    if notice:
        print(notice, file=sys.stderr, flush=True)
    sys.stdout.flush()
    os.execv(argv[0], argv)  # replaces this process: Flower gets our signals and exit code
    return 0  # pragma: no cover - execv does not return
