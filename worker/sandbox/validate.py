"""Body checks shared by the /v3 handlers: Content-Type (415), JSON (400), schema (400)."""

from __future__ import annotations

import re
from typing import Any

from worker.sandbox.http import Reply, Request, api_error, parse_json
from worker.sandbox.schema import first_error

VALIDATION = "contacts.api.validation.error"
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                     r"[0-9a-fA-F]{12}$")


class Invalid(Exception):
    """A request the API answers with an error reply."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def bad(message: str) -> Invalid:
    return Invalid(api_error(400, VALIDATION, message))


def json_body(request: Request, definition: str | None) -> dict[str, Any]:
    """The JSON object body, validated against `#/definitions/<definition>`."""
    if request.content_type != "application/json":
        raise Invalid(api_error(415, "unsupported_media_type",
                                "Content-Type must be application/json."))
    try:
        body = parse_json(request.body)
    except ValueError as exc:
        raise bad(str(exc)) from None
    if not isinstance(body, dict):
        raise bad("body: must be a JSON object")
    if definition is not None:
        problem = first_error(definition, body)
        if problem is not None:
            raise bad(problem)
    return body


def check_email(address: str) -> str:
    address = address.strip()
    if not EMAIL_RE.match(address):
        raise bad("email_address: is not a valid email address")
    return address


def check_birthday(body: dict[str, Any]) -> None:
    month, day = body.get("birthday_month"), body.get("birthday_day")
    if (month is None) != (day is None):
        raise bad("birthday_month and birthday_day must be used together")
    if month is not None and not 1 <= month <= 12:
        raise bad("birthday_month: must be between 1 and 12")
    if day is not None and not 1 <= day <= 31:
        raise bad("birthday_day: must be between 1 and 31")


def check_source(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        raise bad(f"{name}: is required")
    if value not in ("Contact", "Account"):
        raise bad(f"{name}: must be Contact or Account")
    return str(value)


def limit_param(raw: str | None, default: int, low: int, high: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad(f"limit: must be an integer between {low} and {high}") from None
    if not low <= value <= high:
        raise bad(f"limit: must be between {low} and {high}")
    return value
