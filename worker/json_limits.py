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
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth + 1 > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
