"""Fill docs/intake-form.html the way a browser submits it (inputs, hidden fields, checkbox)."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

PAGE = Path(__file__).resolve().parents[2] / "docs" / "intake-form.html"


class _Form(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.inputs: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = values["action"]
        elif tag == "input":
            self.inputs.append(values)


def submission(typed: dict[str, str], key: str, *, check: bool = True
               ) -> tuple[str, dict[str, str]]:
    """(action path, fields) as a browser would post them after a person typed `typed`."""
    form = _Form()
    form.feed(PAGE.read_text())
    fields: dict[str, str] = {}
    for item in form.inputs:
        name, kind = item["name"], item.get("type", "text")
        if kind == "checkbox":
            if check:
                fields[name] = item["value"]
        elif kind == "hidden":
            fields[name] = key if name == "_key" else item["value"]
        else:
            fields[name] = typed.get(name, "")
    return urlsplit(form.action).path, fields
