"""Limits on decoded JSON that Python's own decoder does not have.

`json.loads` of 10,000 nested arrays raises RecursionError; a few hundred levels decode, and then
fail later wherever a recursive walk (repr, pickle to a pool process, json.dumps, pydantic) meets
them deeper in the stack. No lead needs more than a handful of levels, so anything past
MAX_DEPTH is refused where it is first read, by a walk that does not recurse itself.
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 32  # a lead message is about 6 levels deep: [args, kwargs, embed] > lead > address


def deeper_than(value: Any, limit: int = MAX_DEPTH) -> bool:
    """True when lists/dicts nest more than `limit` levels (a scalar is level 0)."""
    if not isinstance(value, (dict, list, tuple)):
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, (dict, list, tuple)):  # only containers go on the stack
                stack.append((child, depth + 1))
    return False
