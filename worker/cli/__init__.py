"""`leadsync` console script: `main(argv=None) -> int`, one clear line for expected errors.

Each sub-command lives in its own module with a `register(subparsers)` function that adds its
parser and sets `handler=callable(args) -> int` as a default.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from worker.base.errors import LeadsyncError
from worker.cli.exit_codes import ExitCode, exit_code_for

# Order here is the order in `leadsync --help`.
COMMAND_MODULES = [
    "worker.cli.demo_cmd",
    "worker.cli.sandbox_cmd",
    "worker.cli.auth_cmd",
    "worker.cli.enqueue_cmd",
    "worker.cli.intake_cmd",
    "worker.cli.schema_cmd",
    "worker.cli.dlq_cmd",
    "worker.cli.status_cmd",
    "worker.cli.flower_cmd",
]

EPILOG = """examples:
  leadsync demo                          # whole product on a laptop, about a minute
  leadsync sandbox --port 8911           # a local Constant Contact to try producers against
  leadsync auth device                   # one-time authorization from a headless server
  leadsync enqueue leads.csv             # queue leads from a file (CSV or JSON Lines)
  leadsync intake --port 8080            # HTTP intake: POST /v1/leads (keys: intake keys)
  leadsync status                        # is it flowing? token, queue, parked, dead letters
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leadsync",
        description="Sales leads into Constant Contact (V3): authorize once, refresh forever.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return int(ExitCode.USAGE)
    try:
        return int(handler(args))
    except LeadsyncError as exc:
        print(f"leadsync: {exc}", file=sys.stderr)
        return int(exit_code_for(exc))
    except KeyboardInterrupt:
        print("leadsync: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
