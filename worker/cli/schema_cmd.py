"""`leadsync schema`: print the lead message's JSON Schema (the contract for any producer)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from worker.cli.exit_codes import ExitCode
from worker.leads.lead import SCHEMA_VERSION, lead_json_schema

CHECKED_IN = Path(__file__).resolve().parents[1] / "schema" / f"lead.v{SCHEMA_VERSION}.schema.json"

EXAMPLES = """examples:
  leadsync schema                                    # print it
  leadsync schema > worker/schema/lead.v1.schema.json  # regenerate the checked-in copy
"""


def render_schema() -> str:
    """The schema as checked in: 2-space indented JSON with a final newline."""
    return json.dumps(lead_json_schema(), indent=2, ensure_ascii=False) + "\n"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "schema",
        help="print the JSON Schema of the lead message",
        description="Print the JSON Schema (draft 2020-12) of the lead message, version "
        f"{SCHEMA_VERSION}, including the limits rule.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(render_schema())
    return int(ExitCode.OK)
