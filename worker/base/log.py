"""Logging for the CLI and the Celery processes: text or JSON, always scrubbed.

Every record is scrubbed when it is created (and again by `ScrubFilter` at our handler), so
even a careless message, a third-party library's exception text or Celery's own task context
cannot put a token, a secret or a lead's personal data (email, phone, names, address, custom
fields) into the logs, in text or JSON.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from worker.base.redaction import (
    PERSONAL_FIELDS,
    PERSONAL_OBJECTS,
    REDACTED,
    TASK_ARGUMENTS,
    scrub,
    scrub_value,
)

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_MARK = "_leadsync_scrubbed"  # the message as scrub_record left it
_ARGS = "_leadsync_args"  # (mapping arguments as given, scrubbed)
_KEYED = PERSONAL_FIELDS | PERSONAL_OBJECTS | TASK_ARGUMENTS  # keys scrub_value treats apart


# Records that carry a task message's raw content as arguments (argument positions withheld):
# Celery's pool logs the whole request, body included, at DEBUG.
_RAW_MESSAGE_ARGS: dict[tuple[str, str], tuple[int, ...]] = {
    ("celery.pool", "TaskPool: Apply %s (args:%s kwargs:%s)"): (1, 2),
}


def scrub_record(record: logging.LogRecord) -> logging.LogRecord:
    """Render the message now from scrubbed arguments, scrub the text, its exception text and
    every extra (recursively: Celery's `data` extra is a dict holding the task's arguments).
    A record the factory scrubbed keeps a mark; scrubbed again (by the handler's filter), only
    what was set on it since is scrubbed: its `extra=` fields, a new message."""
    if getattr(record, _MARK, None) is record.msg and record.args is None:
        _scrub_extras(record)
        return record
    args = record.args
    try:
        if isinstance(args, tuple):
            withheld = _RAW_MESSAGE_ARGS.get((record.name, str(record.msg)), ())
            args = tuple(REDACTED if i in withheld else scrub_value(arg)
                         for i, arg in enumerate(args))
        elif isinstance(args, Mapping):
            scrubbed = scrub_value(args)
            # Celery passes its task context both as the arguments and as the `data` extra:
            # the extra is then the same object, scrubbed once (see _scrub_extras).
            setattr(record, _ARGS, (args, scrubbed))
            args = scrubbed
        record.args = args
        record.msg = scrub(record.getMessage())
    except Exception:  # a bad format string must not lose the log line
        record.msg = scrub(str(record.msg))
    record.args = None
    if record.exc_info and record.exc_info[1] is not None:
        record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        record.exc_info = None
    elif record.exc_text:
        record.exc_text = scrub(record.exc_text)
    if record.stack_info:
        record.stack_info = scrub(record.stack_info)
    _scrub_extras(record)
    setattr(record, _MARK, record.msg)
    return record


def _scrub_extras(record: logging.LogRecord) -> None:
    fields = vars(record)
    extras = [key for key in fields.keys() - _STANDARD if not key.startswith("_")]
    if not extras:
        return
    original, scrubbed = getattr(record, _ARGS, (None, None))
    for key in extras:
        value = fields[key]
        if value is original and key not in _KEYED:
            setattr(record, key, scrubbed)  # scrub_value(x, key) is scrub_value(x) here
        else:
            setattr(record, key, scrub_value(value, key))


class ScrubFilter(logging.Filter):
    """Scrub at the handler too: `extra=` fields are set after the record factory ran, and
    records may predate the factory."""

    def filter(self, record: logging.LogRecord) -> bool:
        scrub_record(record)
        return True


_base_factory = logging.getLogRecordFactory()


def _scrubbing_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    return scrub_record(_base_factory(*args, **kwargs))


def install_scrubbing() -> None:
    """Scrub every record at creation, so every handler (Celery's, pytest's) sees clean text."""
    if logging.getLogRecordFactory() is not _scrubbing_factory:
        logging.setLogRecordFactory(_scrubbing_factory)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra= fields become keys."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = value
        if record.exc_text:
            payload["exc"] = record.exc_text
        return json.dumps(payload, default=str)


class TextFormatter(logging.Formatter):
    """Human lines; extra= fields appended as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [
            f"{key}={value}"
            for key, value in vars(record).items()
            if key not in _STANDARD and not key.startswith("_")
        ]
        return f"{line} {' '.join(extras)}" if extras else line


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Install one scrubbed handler on the root logger (idempotent)."""
    install_scrubbing()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_leadsync", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._leadsync = True  # type: ignore[attr-defined]  # marker to stay idempotent
    handler.addFilter(ScrubFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Celery's own per-task lines, "Received task ..." (the consumer, one per message) and
    # "Task ... succeeded in ...s" (the pool), repeat the one line each lead's outcome gets
    # (worker/delivery/result.py). Each cost as much CPU as the lead's Redis work (record, scrub
    # of the task's arguments, format); the received line was 7 % of the worker's CPU, all of it
    # in the one consumer process. Shown at DEBUG only; their warnings and errors stay.
    for name in ("celery.app.trace", "celery.worker.strategy"):
        logging.getLogger(name).setLevel(
            logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING)
