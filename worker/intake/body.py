"""Reading a request: content type, the size limit, and the JSON shapes a producer may send."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from worker.base.errors import LeadsyncError

MAX_BATCH = 500
JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"


class RequestProblem(LeadsyncError):
    """The request as a whole is refused: `status_code` and a reason (no payload echoed)."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.reason = reason


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def require_type(request: Request, *allowed: str) -> str:
    kind = media_type(request)
    if kind not in allowed:
        raise RequestProblem(415, f"content type must be {' or '.join(allowed)}")
    return kind


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 past `limit` bytes (checked while reading, too)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestProblem(413, f"body over the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestProblem(413, f"body over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def json_items(raw: bytes) -> tuple[list[Any], bool]:
    """(items, is_batch): one lead object, a JSON array, or {"leads": [...]}."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise RequestProblem(400, "body is not valid JSON") from None
    if isinstance(data, dict) and isinstance(data.get("leads"), list):
        data = data["leads"]
    if isinstance(data, list):
        if not data:
            raise RequestProblem(422, "empty batch")
        if len(data) > MAX_BATCH:
            raise RequestProblem(413, f"batch of {len(data)} leads; at most {MAX_BATCH}")
        return data, True
    return [data], False
