"""`leadsync enqueue FILE|-`: queue leads from CSV (header row) or JSON Lines.

Rows are read lazily and pushed in pipelined batches; every rejected row is reported with its
line number and a redacted reason, and the exit code says whether all rows went in.
"""

from __future__ import annotations

import argparse
import codecs
import csv
import itertools
import json
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from worker.cli.exit_codes import ExitCode
from worker.enqueue import (
    DEFAULT_BATCH_SIZE,
    EnqueueReport,
    SourceRow,
    enqueue_leads,
    redis_location,
)
from worker.errors import InvalidLeadError, RedisUnavailableError
from worker.redaction import scrub
from worker.wire import QUEUE

PLAIN_COLUMNS = (
    *("email", "first_name", "last_name", "phone", "company", "job_title"),
    *("consent", "source", "lead_id", "received_at"),
)
ADDRESS_COLUMNS = ("street", "city", "state", "postal_code", "country", "address_kind")
LIST_COLUMN = "list_ids"
CUSTOM_PREFIXES = ("cf:", "custom.")
TRUE_WORDS = {"true", "yes", "y", "1", "on"}
FALSE_WORDS = {"false", "no", "n", "0", "off", ""}
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


def csv_row_to_lead(row: dict[str, str | None]) -> dict[str, Any]:
    """Map one CSV row (keys already normalized) to the lead model's fields."""
    lead: dict[str, Any] = {}
    address: dict[str, str] = {}
    custom: dict[str, str] = {}
    for column, raw in row.items():
        value = (raw or "").strip()
        if column == "consent":
            lead["consent"] = _yes_no(value)
        elif not value:
            continue
        elif column == LIST_COLUMN:
            lead["list_ids"] = value.replace(";", " ").replace(",", " ").split()
        elif column in ADDRESS_COLUMNS:
            address["kind" if column == "address_kind" else column] = value
        elif column.startswith(CUSTOM_PREFIXES):
            custom[column.split(":", 1)[1] if column.startswith("cf:") else column[7:]] = value
        else:
            lead[column] = value
    if address:
        lead["address"] = address
    if custom:
        lead["custom_fields"] = custom
    return lead


def _yes_no(value: str) -> bool:
    word = value.lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise InvalidLeadError("consent: not a yes/no value", field="consent")


def normalize_header(header: list[str]) -> list[str]:
    """Lower-case known columns, keep custom field names; reject unknown or repeated ones."""
    known = {*PLAIN_COLUMNS, *ADDRESS_COLUMNS, LIST_COLUMN}
    result: list[str] = []
    for raw in header:
        name = raw.strip()
        lowered = name.lower()
        if lowered in known:
            name = lowered
        elif lowered.startswith(CUSTOM_PREFIXES):
            prefix = "cf:" if lowered.startswith("cf:") else "custom."
            name = prefix + name[len(prefix) :].strip()
            if name == prefix:
                raise InvalidLeadError(f"CSV header: column {raw!r} has no custom field name")
        else:
            raise InvalidLeadError(
                f"CSV header: unknown column {raw!r} (known: {', '.join(sorted(known))}, "
                "cf:<name>, custom.<name>)"
            )
        if name in result:
            raise InvalidLeadError(f"CSV header: column {name!r} appears twice")
        result.append(name)
    if "email" not in result:
        raise InvalidLeadError("CSV header: no email column")
    return result


def read_csv(lines: Iterable[str]) -> Iterator[SourceRow]:
    """Rows with the line each starts on (quoted cells may span lines)."""
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        return
    columns = normalize_header(header)
    line = reader.line_num
    for cells in reader:
        start, line = line + 1, reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) > len(columns):
            yield SourceRow(start, error=f"{len(cells)} cells but {len(columns)} columns")
            continue
        try:
            yield SourceRow(start, csv_row_to_lead(dict(itertools.zip_longest(columns, cells))))
        except InvalidLeadError as exc:
            yield SourceRow(start, error=str(exc))


def read_jsonl(lines: Iterable[str]) -> Iterator[SourceRow]:
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            yield SourceRow(number, json.loads(text))
        except ValueError:
            yield SourceRow(number, error="not valid JSON")


class ByteLines:
    """Decoded lines from a binary stream, counting bytes read (for the progress bar).

    Decoding is strict: a byte the encoding cannot read stops the run with its line number
    (`check_encoding` finds it before anything is queued). A UTF-8 byte order mark is skipped.
    """

    def __init__(self, stream: IO[bytes], encoding: str = "utf-8") -> None:
        self._stream = stream
        self.encoding = encoding
        self.bytes_read = 0
        self.line = 0
        self._peeked: list[str] = []

    def _decode(self, raw: bytes) -> str:
        self.bytes_read += len(raw)
        self.line += 1
        if self.line == 1:
            raw = raw.removeprefix(codecs.BOM_UTF8)
        try:
            return raw.decode(self.encoding)
        except UnicodeDecodeError as exc:
            raise InvalidLeadError(undecodable(self.line, self.encoding, raw, exc)) from None

    def peek(self) -> str:
        for raw in self._stream:
            text = self._decode(raw)
            self._peeked.append(text)
            if text.strip():
                return text
        return ""

    def __iter__(self) -> Iterator[str]:
        yield from self._peeked
        self._peeked = []
        for raw in self._stream:
            yield self._decode(raw)


def undecodable(line: int, encoding: str, raw: bytes, exc: UnicodeDecodeError) -> str:
    """The one line that says which line, which byte, and what to do (never the text)."""
    column = len(raw[: exc.start].decode(encoding, "replace")) + 1
    hint = ("convert the file to UTF-8, or name its encoding with --encoding NAME "
            "(e.g. --encoding latin-1 or --encoding cp1252)") if codecs.lookup(
        encoding).name == "utf-8" else "check --encoding"
    return (f"line {line}: not valid {encoding} (byte 0x{raw[exc.start]:02x} at column "
            f"{column}); nothing was enqueued: {hint}")


def check_encoding(stream: IO[bytes], encoding: str) -> None:
    """Read the whole input once, strictly, before anything is queued: a file in the wrong
    encoding is refused whole instead of half-enqueued with mangled names."""
    lines = ByteLines(stream, encoding)
    for _ in lines:
        pass


def resolve_encoding(name: str) -> str:
    """A codec name Python knows that keeps `\\n` and `,` as single bytes (lines are split on
    bytes); UTF-16/32 files must be converted first."""
    try:
        info = codecs.lookup(name)
    except LookupError:
        raise InvalidLeadError(f"--encoding: unknown encoding {name!r}") from None
    try:
        compatible = "a,\n".encode(info.name) == b"a,\n"
    except UnicodeError:
        compatible = False
    if not compatible or info.name.startswith(("utf-16", "utf-32")):
        raise InvalidLeadError(f"--encoding: {name} is not ASCII-compatible; convert the file "
                               "to UTF-8 (e.g. iconv -f utf-16 -t utf-8)")
    return name


def detect_format(path: str, first_line: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return "jsonl"
    return "jsonl" if first_line.lstrip().startswith("{") else "csv"


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
    from worker.redis_conn import get_redis
    from worker.settings import get_settings

    settings = get_settings()
    client = get_redis(settings)
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
        f"enqueued {report.enqueued:,} lead(s) onto '{QUEUE}' at {where}; "
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
