"""Custom field names to ids: contacts refer to custom fields by UUID, producers by name.

The name -> id map is fetched once (GET /contact_custom_fields, from the quota reserve) and
cached in Redis for the whole fleet; an unknown name triggers one re-fetch (a field may have been
added since), then rejects the lead, naming the field.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from worker.base.errors import InvalidLeadError
from worker.base.scope import Scope

CACHE_TTL_S = 600
MEMO_S = 60.0  # within CACHE_TTL_S: never older than what Redis would have answered by much
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

FetchFields = Callable[[], list[dict[str, Any]]]


def name_map(fields: list[dict[str, Any]]) -> dict[str, str]:
    """Both the label and the read-only `name` (label with underscores), case-insensitive."""
    out: dict[str, str] = {}
    for field in fields:
        field_id = field.get("custom_field_id")
        if not field_id:
            continue
        for name in (field.get("name"), field.get("label")):
            if name:
                out[str(name).lower()] = str(field_id)
    return out


class CustomFieldResolver:
    def __init__(self, scope: Scope) -> None:
        self.redis = scope.redis
        self.key = scope.keys.custom_field_ids
        # The fleet's map, kept in this process for MEMO_S: a lead naming custom fields read it
        # from Redis each time; an unknown name still re-fetches at once.
        self._memo: tuple[float, dict[str, str]] | None = None

    def resolve(self, values: Mapping[str, str], fetch: FetchFields) -> dict[str, str]:
        """{custom_field_id: value}; names looked up, UUIDs passed through."""
        names = [key for key in values if not _UUID.match(key)]
        if not names:
            return dict(values)
        known = self._cached()
        if known is None or any(name.lower() not in known for name in names):
            known = name_map(fetch())
            self.redis.set(self.key, json.dumps(known), ex=CACHE_TTL_S)
            self._memo = (time.monotonic(), known)
        missing = [name for name in names if name.lower() not in known]
        if missing:
            raise InvalidLeadError(
                f"custom field {missing[0]!r} does not exist in the Constant Contact account",
                field="custom_fields")
        return {(key if _UUID.match(key) else known[key.lower()]): value
                for key, value in values.items()}

    def _cached(self) -> dict[str, str] | None:
        if self._memo is not None and time.monotonic() - self._memo[0] < MEMO_S:
            return self._memo[1]
        raw = self.redis.get(self.key)
        if raw is None:
            return None
        data: dict[str, str] = json.loads(raw)
        self._memo = (time.monotonic(), data)
        return data
