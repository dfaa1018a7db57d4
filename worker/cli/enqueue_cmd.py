"""`leadsync enqueue FILE|-`: queue leads from CSV (header row) or JSON Lines.

Rows are read lazily and pushed in pipelined batches; every rejected row is reported with its
line number and a redacted reason, and the exit code says whether all rows went in.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

from worker.base.errors import InvalidLeadError, RedisUnavailableError
from worker.base.names import LEADS_QUEUE
from worker.base.redaction import scrub
from worker.cli.exit_codes import ExitCode
from worker.cli.lead_files import (
    ByteLines,
    check_encoding,
    detect_format,
    read_csv,
    read_jsonl,
    resolve_encoding,
)
from worker.leads.enqueue import (
    DEFAULT_BATCH_SIZE,
    EnqueueReport,
    enqueue_leads,
    redis_location,
)

__all__ = ["EXAMPLES", "SHOWN_REJECTIONS", "Progress", "register", "run"]

SHOWN_REJECTIONS = 100

EXAMPLES = """examples:
  leadsync enqueue leads.csv                 # CSV with a header row
  leadsync enqueue leads.jsonl               # one JSON object per line
  cat leads.jsonl | leadsync enqueue -       # stdin (format guessed from the first line)
  leadsync enqueue export.txt --format csv   # force the format
  leadsync enqueue excel.csv --encoding cp1252   # a file that is not UTF-8

CSV columns: email (required), first_name, last_name, phone, company, job_title, street, city,
state, postal_code, country, address_kind (home|work|other), consent (yes/no), source, lead_id,
received_at (ISO 8601), list_ids (separated by spaces or semicolons), cf:<name> or
custom.<name> for custom fields. Empty cells mean "not given".

Files are read as UTF-8 (a BOM is fine). A file that is not (a spreadsheet's Latin-1 export,
say) is refused whole, naming the line, before anything is queued; name its encoding with
--encoding latin-1 (or cp1252, ...).

exit codes: 0 all enqueued, 10 some rows rejected or the file unreadable, 4 Redis unavailable.
"""


class Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, lines: ByteLines, total_bytes: int | None, enabled: bool) -> None:
        self._lines, self._total, self._enabled = lines, total_bytes, enabled
        self._shown = False

    def __call__(self, report: EnqueueReport) -> None:
        if not self._enabled:
            return
        done = f"{report.enqueued:,} enqueued, {report.rejected_count:,} rejected"
        if self._total:
            share = min(self._lines.bytes_read / self._total, 1.0)
            bar = "#" * int(share * 30)
            line = f"\r[{bar:<30}] {share:4.0%}  {done}"
        else:
            line = f"\r{done}"
        sys.stderr.write(line)
        sys.stderr.flush()
        self._shown = True

    def finish(self) -> None:
        if self._shown:
            sys.stderr.write("\n")
            sys.stderr.flush()


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "enqueue",
        help="queue leads from a CSV or JSON Lines file",
        description="Validate leads from FILE (or - for stdin) and queue them for delivery.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", metavar="FILE", help="CSV or JSON Lines file, or - for stdin")
    parser.add_argument("--format", choices=("csv", "jsonl"), help="skip format detection")
    parser.add_argument("--encoding", default="utf-8", metavar="NAME",
                        help="the file's text encoding (default utf-8; a BOM is accepted), "
                        "e.g. latin-1 or cp1252 for spreadsheet exports")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="pipeline size")
    parser.add_argument(
        "--all-rejections",
        action="store_true",
        help=f"list every rejected row (default: the first {SHOWN_REJECTIONS})",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from worker.account import Account

    client = Account.load().redis
    try:
        client.ping()  # fail before reading anything: nothing half-reported
    except Exception as exc:  # redis-py raises several families here; all mean "unavailable"
        raise RedisUnavailableError(
            f"Redis unavailable at {redis_location(client)}: {type(exc).__name__}"
        ) from None
    encoding = resolve_encoding(args.encoding)
    if args.file == "-":
        return _checked_then_enqueued(args, sys.stdin.buffer, "-", None, client, encoding)
    path = Path(args.file)
    try:
        stream = path.open("rb")
    except OSError as exc:
        raise InvalidLeadError(f"cannot read {args.file}: {exc.strerror}") from None
    with stream:
        size = path.stat().st_size if path.is_file() else None
        return _checked_then_enqueued(args, stream, args.file, size, client, encoding)


def _checked_then_enqueued(args: argparse.Namespace, stream: IO[bytes], name: str,
                           size: int | None, client: Any, encoding: str) -> int:
    """Check the encoding of the whole input, then queue it; a pipe (which cannot be read
    twice) is spooled first, to disk past 8 MiB."""
    if stream.seekable():
        check_encoding(stream, encoding)
        stream.seek(0)
        return _enqueue_stream(args, stream, name, size, client)
    with tempfile.SpooledTemporaryFile(max_size=8 << 20) as spool:
        shutil.copyfileobj(stream, spool)
        spool.seek(0)
        check_encoding(spool, encoding)
        spool.seek(0)
        return _enqueue_stream(args, spool, name, size, client)


def _enqueue_stream(
    args: argparse.Namespace, stream: IO[bytes], name: str, size: int | None, client: Any
) -> int:
    lines = ByteLines(stream, args.encoding)
    fmt = args.format or detect_format(name, lines.peek())
    rows = read_csv(lines) if fmt == "csv" else read_jsonl(lines)
    progress = Progress(lines, size, enabled=sys.stderr.isatty())
    try:
        report = enqueue_leads(rows, redis=client, batch_size=args.batch_size, progress=progress)
    finally:
        progress.finish()
    _print_summary(report, redis_location(client), show_all=args.all_rejections)
    return int(ExitCode.INVALID_INPUT if report.rejected else ExitCode.OK)


def _print_summary(report: EnqueueReport, where: str, *, show_all: bool) -> None:
    out = sys.stdout
    out.write(
        f"enqueued {report.enqueued:,} lead(s) onto '{LEADS_QUEUE}' at {where}; "
        f"rejected {report.rejected_count:,}"
    )
    if report.truncated:
        out.write(f"; {report.truncated:,} with fields cut to Constant Contact's limits")
    out.write("\n")
    shown = report.rejected if show_all else report.rejected[:SHOWN_REJECTIONS]
    for rejection in shown:
        out.write(f"  line {rejection.index}: {scrub(rejection.reason)}\n")
    hidden = report.rejected_count - len(shown)
    if hidden:
        out.write(f"  … and {hidden:,} more (use --all-rejections)\n")
    out.flush()
