"""Reading lead files for `leadsync enqueue`: CSV (header row) and JSON Lines, decoded strictly.

Split from worker.cli.enqueue_cmd (which re-exports these names). Each reader yields a
`SourceRow` per row, with the line it starts on and either the lead's fields or a reason;
`ByteLines` decodes and counts bytes for the progress bar.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from worker.base.errors import InvalidLeadError
from worker.leads.enqueue import SourceRow

PLAIN_COLUMNS = (
    *("email", "first_name", "last_name", "phone", "company", "job_title"),
    *("consent", "source", "lead_id", "received_at"),
)
ADDRESS_COLUMNS = ("street", "city", "state", "postal_code", "country", "address_kind")
LIST_COLUMN = "list_ids"
CUSTOM_PREFIXES = ("cf:", "custom.")
TRUE_WORDS = {"true", "yes", "y", "1", "on"}
FALSE_WORDS = {"false", "no", "n", "0", "off", ""}


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
