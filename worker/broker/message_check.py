"""Can kombu and Celery read this list entry without failing? A pure check, before any of them do.

Producers in any language LPUSH raw bytes, and what kombu and Celery do with a broken entry ranges
from a log line (the message dropped) to "Unrecoverable error" (the worker gone, the message left
in `unacked` to kill the next one). So every step they take is taken here first, with the same
decoder (kombu's JSON, whose `__type__` hook can raise anything), inside a net that catches any
exception, and with limits they lack: the size (`LEADSYNC_MAX_MESSAGE_BYTES`, checked before any
parse) and the nesting depth (a 10,000-deep array is a RecursionError wherever it is touched).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Collection
from typing import Any

from celery.utils.time import maybe_iso8601
from kombu.utils.json import loads as kombu_loads

from worker.base.json_limits import MAX_DEPTH, deeper_than

ACCEPTED_CONTENT_TYPE = "application/json"  # the app accepts JSON only (worker/celery.py)
ACCEPTED_CONTENT_ENCODINGS = ("utf-8", "utf8")
MAX_TAG_CHARS = 256
CANVAS_KEYS = ("callbacks", "errbacks", "chain", "chord")
MAX_HEADER_CHARS = 4096  # Celery logs id and argsrepr and sends them in events: kept short
# Headers Celery reads in the consumer process, and the JSON types it can cope with there.
_STR = (str,)
_OPT_STR = (str, type(None))
_HEADER_TYPES: dict[str, tuple[type, ...]] = {
    "id": _STR, "task": _STR, "lang": _OPT_STR, "root_id": _OPT_STR, "parent_id": _OPT_STR,
    "group": _OPT_STR, "group_index": (int, type(None)), "shadow": _OPT_STR,
    "argsrepr": _OPT_STR, "kwargsrepr": _OPT_STR, "origin": _OPT_STR,
    "eta": _OPT_STR, "expires": _OPT_STR, "retries": (int,),
    "timelimit": (list, type(None)), "ignore_result": (bool, type(None)),
    "replaced_task_nesting": (int,), "compression": (type(None),),
}
_PROPERTY_TYPES: dict[str, tuple[type, ...]] = {
    "correlation_id": _OPT_STR, "reply_to": _OPT_STR, "priority": (int, type(None)),
    "delivery_mode": (int, type(None)), "body_encoding": _OPT_STR,
}


def decode_json(text: str | bytes) -> tuple[Any, str | None]:
    """(value, None) or (None, why): kombu's decoder, any exception caught, depth limited."""
    try:
        # kombu's hook only acts on {"__type__": ..., "__value__": ...}: without that text the
        # plain decoder gives the same value, at C speed.
        hooked = ("__type__" in text) if isinstance(text, str) else (b"__type__" in text)
        value = kombu_loads(text) if hooked else json.loads(text)
    except RecursionError:
        return None, f"nested deeper than {MAX_DEPTH} levels"
    except json.JSONDecodeError:
        return None, "not JSON"
    except Exception as exc:  # kombu's type hook can raise anything: kept aside
        return None, f"not JSON kombu can read ({type(exc).__name__})"
    # Each level needs its own bracket: with few brackets in the text, no walk is needed.
    brackets = text.count("[") + text.count("{") if isinstance(text, str) else (
        text.count(b"[") + text.count(b"{"))
    if brackets > MAX_DEPTH and deeper_than(value, MAX_DEPTH):
        return None, f"nested deeper than {MAX_DEPTH} levels"
    return value, None


def envelope_problem(raw: bytes | str, known_tasks: Collection[str] | None = None, *,
                     max_bytes: int | None = None) -> str | None:
    """Why this list entry cannot be delivered, or None if it can.

    Without `known_tasks` (a reply queue, say) only what kombu needs to build a message is
    checked. With them (a task queue), also everything Celery reads before the task runs.
    """
    size = len(raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw)
    if max_bytes is not None and size > max_bytes:
        return f"message is {size} bytes, over LEADSYNC_MAX_MESSAGE_BYTES ({max_bytes})"
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            return "list entry is not UTF-8 text"
    message, problem = decode_json(raw)
    if problem is not None:
        return "list entry is " + problem
    if not isinstance(message, dict):
        return "list entry is not a JSON object"
    properties = message.get("properties")
    if not isinstance(properties, dict):
        return "message has no `properties` object"
    info = properties.get("delivery_info")
    if not isinstance(info, dict):
        return "message has no `properties.delivery_info` object"
    if not isinstance(info.get("exchange"), str) or not isinstance(info.get("routing_key"), str):
        return "`properties.delivery_info` needs `exchange` and `routing_key` strings"
    tag = properties.get("delivery_tag")
    if tag is None:
        return "message has no `properties.delivery_tag`"
    if not isinstance(tag, str) or not 0 < len(tag) <= MAX_TAG_CHARS:
        return f"`properties.delivery_tag` must be a string of 1 to {MAX_TAG_CHARS} characters"
    headers = message.get("headers", {})
    if not isinstance(headers, dict):
        return "message `headers` is not an object"
    if "body" not in message:
        return "message has no `body`"
    if known_tasks is None:
        return None
    return _task_problem(message, properties, headers, known_tasks)


def _typed(where: str, values: dict[str, Any], types: dict[str, tuple[type, ...]]) -> str | None:
    for name, allowed in types.items():
        if name in values and (not isinstance(values[name], allowed)
                               or (isinstance(values[name], bool) and bool not in allowed)):
            return f"`{where}.{name}` has the wrong type"
    return None


def _task_problem(message: dict[str, Any], properties: dict[str, Any], headers: dict[str, Any],
                  known_tasks: Collection[str]) -> str | None:
    task = headers.get("task")
    if not isinstance(task, str):
        return "message has no `headers.task` naming the task"
    if task not in known_tasks:
        return f"unknown task {task[:100]!r}"
    if not isinstance(headers.get("id"), str):
        return "message has no `headers.id` string"
    problem = _typed("headers", headers, _HEADER_TYPES) or _typed(
        "properties", properties, _PROPERTY_TYPES)
    if problem is not None:
        return problem
    for name, value in headers.items():
        if isinstance(value, str) and len(value) > MAX_HEADER_CHARS:
            return f"`headers.{str(name)[:50]}` is longer than {MAX_HEADER_CHARS} characters"
    limits = headers.get("timelimit")
    if limits is not None and (len(limits) != 2 or not all(
            v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in limits)):
        return "`headers.timelimit` must be [soft, hard] seconds or null"
    for name in ("eta", "expires"):
        value = headers.get(name)
        try:
            # Celery parses a present value; "" parses to None, which it then fails on.
            bad = value is not None and maybe_iso8601(value) is None
        except Exception:  # Celery would raise it in the consumer, as an invalid task
            bad = True
        if bad:
            return f"`headers.{name}` is not an ISO 8601 time"
    if message.get("content-type") != ACCEPTED_CONTENT_TYPE:
        return f"`content-type` must be {ACCEPTED_CONTENT_TYPE!r}"
    if message.get("content-encoding", "utf-8") not in ACCEPTED_CONTENT_ENCODINGS:
        return "`content-encoding` must be 'utf-8'"
    return _body_problem(message["body"], properties.get("body_encoding"))


def _body_problem(body: Any, encoding: Any) -> str | None:
    if not isinstance(body, str):
        return "message `body` is not a string"
    if encoding is not None:
        if encoding != "base64":
            return "`properties.body_encoding` must be 'base64' or absent"
        try:
            body = base64.b64decode(body, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return "message `body` is not valid base64 of UTF-8 text"
    decoded, problem = decode_json(body)
    if problem is not None:
        return "task body is " + problem
    # Celery unpacks `args, kwargs, embed` in the consumer; anything else is a crash or, for a
    # dict holding 'args', the old protocol-1 path that fails outside any handler.
    if not (isinstance(decoded, list) and len(decoded) == 3 and isinstance(decoded[0], list)
            and isinstance(decoded[1], dict) and isinstance(decoded[2], dict | None)):
        return "task body is not [args, kwargs, embed]"
    # Run after the task in the pool process: a broken one fails there, after the outcome.
    if any(value not in (None, []) for key, value in (decoded[2] or {}).items()
           if key in CANVAS_KEYS):
        return "task body carries callbacks, errbacks, a chain or a chord (leadsync takes none)"
    return None
