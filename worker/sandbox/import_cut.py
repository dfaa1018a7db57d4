"""Constant Contact's silent cut: only the first 4 MB of a contacts_json_import are processed.

The cut is measured on the request body as it arrived, byte for byte: a row counts when its
JSON text ends within the first `limit` bytes, whatever the client's spacing or escaping. The
body was already parsed whole (and its top level validated); this walks the truncated prefix
with the stdlib decoder to find where `import_data` rows end.
"""

from __future__ import annotations

import json
import re

_WS = re.compile(r"[ \t\n\r]*")
_decode = json.JSONDecoder().raw_decode


def rows_within(raw: bytes, limit: int) -> int:
    """How many `import_data` rows end within the first `limit` bytes of `raw`."""
    text = raw[:limit].decode("utf-8", errors="ignore")  # a cut multi-byte character goes

    def skip(at: int) -> int:
        match = _WS.match(text, at)
        assert match is not None  # the pattern matches the empty string
        return match.end()

    count = 0
    try:
        at = skip(0)
        if text[at] != "{":
            return 0
        at = skip(at + 1)
        while text[at] != "}":
            key, at = _decode(text, at)
            at = skip(at)
            if text[at] != ":":
                return 0
            at = skip(at + 1)
            if key != "import_data":
                _, at = _decode(text, at)
            else:
                if text[at] != "[":
                    return 0
                at = skip(at + 1)
                while text[at] != "]":
                    _, at = _decode(text, at)  # raises on a row the cut went through
                    count += 1
                    at = skip(at)
                    if text[at] == ",":
                        at = skip(at + 1)
                return count
            at = skip(at)
            if text[at] == ",":
                at = skip(at + 1)
    except (ValueError, IndexError):  # the prefix ends inside a row (or past the last one)
        pass
    return count
