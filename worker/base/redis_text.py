"""redis-py answers bytes unless asked otherwise: one place that turns a reply into text."""

from __future__ import annotations

from typing import Any


def text(value: Any) -> str:
    """A Redis reply (bytes or str) as str."""
    return value.decode() if isinstance(value, bytes) else str(value)
