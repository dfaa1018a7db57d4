"""The lead's limits and normalization: Constant Contact's field limits, how free text is
cleaned and cut, how identifiers are checked, and how a broken rule is described.

Split from worker.leads.lead (the model), which re-exports the public names: one rule, written once
(LIMITS_RULE, also in the JSON Schema), with the cut fields named in `truncated`.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

# Constant Contact's limits (facts sheet 4.3 and 4.5).
EMAIL_MAX = 50  # sign_up_form's email_address
LIST_IDS_MAX = 50
CUSTOM_FIELDS_MAX = 25  # contacts POST/PUT and the JSON import (sign_up_form allows 50)
CUSTOM_FIELD_KEY_MAX = 50  # a label is at most 50 characters
CUSTOM_FIELD_VALUE_MAX = 255
LEAD_ID_MAX = 128
SOURCE_MAX = 100
LEAD_MAX_DEPTH = 8  # a lead object is 3 levels deep (lead > address / custom_fields > value)
LEAD_TEXT_MAX_CHARS = 1_048_576  # a lead as JSON text: far above any valid lead
TEXT_LIMITS = {
    "first_name": 50,
    "last_name": 50,
    "company": 50,
    "job_title": 50,
    "phone": 25,
}
ADDRESS_LIMITS = {"street": 255, "city": 50, "state": 50, "postal_code": 50, "country": 50}

LIMITS_RULE = (
    "Limits rule: free-text fields beyond Constant Contact's limits (first_name, last_name, "
    "company, job_title 50; phone 25; address.street 255; address.city/state/postal_code/country "
    "50; custom field value 255) are cut to the limit and the field is named in `truncated`; "
    "nothing is cut silently. Identifiers and structure are never cut: an email over 50 "
    "characters, more than 50 list ids, more than 25 custom fields, a lead_id over 128 "
    "characters or any malformed value rejects the lead with a reason naming the field."
)

_EMAIL = re.compile(
    r"^(?!\.)(?!.*\.\.)[a-z0-9!#$%&'*+/=?^_`{|}~.-]+(?<!\.)"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"
)
_LEAD_ID = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces: safe in a Redis key
# What str(uuid.UUID(x)) gives back unchanged: most list ids, checked without building a UUID.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_UUID_MIN_CHARS = 32  # uuid.UUID() wants 32 hex digits once hyphens, braces, `urn:` are gone
_ADDRESS_LABELS = tuple((name, limit, f"address.{name}") for name, limit in ADDRESS_LIMITS.items())


def _clean_text(value: Any) -> Any:
    r"""Trim and collapse whitespace; an empty string means "not given".

    `str.split()` splits on exactly the characters regex `\s` matches (str.isspace), so this is
    `re.sub(r"\s+", " ", value).strip()` at a fraction of the cost (tests/leads pin it).
    """
    if not isinstance(value, str):
        return value
    return " ".join(value.split()) or None


def _check_unicode(value: str, label: str) -> None:
    """Refuse text with a lone surrogate (`"\\ud800"` is valid JSON, json.loads returns it):
    it has no UTF-8 form, so the lead could never be kept as a message nor sent. Pydantic only
    catches it in fields with a length constraint, and `derive_lead_id` only without a lead_id."""
    if not value.isascii():  # O(1) for the usual ASCII text
        try:
            value.encode()
        except UnicodeEncodeError:
            raise PydanticCustomError(
                "unicode", "{label}: not valid Unicode text (a lone surrogate)",
                {"label": label}) from None


def _cut_fields(data: dict[str, Any], limits: Any, cut: list[str]) -> None:
    """Clean each (name, limit, label) present in `data`; cut over-limit text, noting the label."""
    for name, limit, label in limits:
        if name not in data:
            continue
        value = data[name]
        if isinstance(value, str):
            _check_unicode(value, label)
            value = " ".join(value.split()) or None
            if value is not None and len(value) > limit:
                value = value[:limit].rstrip()
                cut.append(label)
        data[name] = value


_TEXT_LABELS = tuple((name, limit, name) for name, limit in TEXT_LIMITS.items())


def _cut_custom_fields(fields: dict[Any, Any], cut: list[str]) -> dict[Any, Any]:
    result: dict[Any, Any] = {}
    for key, value in fields.items():
        for text in (key, value):
            if isinstance(text, str):
                _check_unicode(text, "custom_fields")
        name = key.strip() if isinstance(key, str) else key
        if isinstance(name, str) and len(name) >= _UUID_MIN_CHARS:
            with contextlib.suppress(ValueError):  # a name, not a UUID: kept as given
                name = str(uuid.UUID(name))
        if name in result:
            raise PydanticCustomError(
                "custom_field_key", "custom_fields: two keys are the same after trimming"
            )
        if isinstance(value, str):
            value = value.strip()
            if len(value) > CUSTOM_FIELD_VALUE_MAX:
                value = value[:CUSTOM_FIELD_VALUE_MAX].rstrip()
                cut.append(f"custom_fields.{name}")
        result[name] = value
    for name in result:
        if not isinstance(name, str) or not name or len(name) > CUSTOM_FIELD_KEY_MAX:
            raise PydanticCustomError(
                "custom_field_key",
                "custom_fields: a key must be a UUID or a name of 1 to {limit} characters",
                {"limit": CUSTOM_FIELD_KEY_MAX},
            )
    return result


def apply_limits(data: dict[str, Any], address_model: type[BaseModel]) -> dict[str, Any]:
    """A copy of the raw lead with free text cut to the limits and the cut fields in `truncated`.

    `address_model` is the Lead's Address model: an instance of it is read as its fields.
    """
    data = dict(data)
    cut: list[str] = []
    _cut_fields(data, _TEXT_LABELS, cut)
    address = data.get("address")
    if isinstance(address, address_model):
        address = address.model_dump()
    if isinstance(address, dict):
        address = dict(address)
        _cut_fields(address, _ADDRESS_LABELS, cut)
        data["address"] = address
    fields = data.get("custom_fields")
    if isinstance(fields, dict) and fields:
        data["custom_fields"] = _cut_custom_fields(fields, cut)
    if "source" in data:
        data["source"] = _clean_text(data["source"])
    if cut:
        previous = data.get("truncated") or []
        if isinstance(previous, list):
            data["truncated"] = list(dict.fromkeys([*previous, *cut]))
    return data


def normalize_list_ids(value: list[str]) -> list[str]:
    """Each list id as `str(uuid.UUID(...))` gives it, duplicates dropped, order kept."""
    if not value:
        return value
    normalized: list[str] = []
    for index, raw in enumerate(value):
        raw = raw.strip()
        if _CANONICAL_UUID.fullmatch(raw):
            normalized.append(raw)
            continue
        try:
            normalized.append(str(uuid.UUID(raw)))
        except ValueError:
            raise PydanticCustomError(
                "list_id", "item {index} is not a list UUID", {"index": index}
            ) from None
    return list(dict.fromkeys(normalized))


def describe_error(exc: ValidationError) -> tuple[str, str | None]:
    """First error as `field: reason`, never echoing the value (it may be personal data)."""
    errors = exc.errors(include_input=False, include_url=False)
    first = errors[0]
    loc = ".".join(str(part) for part in first.get("loc", ()))
    kind = first.get("type", "")
    ctx = first.get("ctx") or {}
    if kind == "string_too_long":
        reason = f"longer than {ctx.get('max_length')} characters (the limit)"
    elif kind == "too_long":
        reason = f"more than {ctx.get('max_length')} items (the limit)"
    elif kind == "extra_forbidden":
        reason = "unknown field"
    elif kind == "missing":
        reason = "required"
    else:
        reason = first.get("msg", "invalid").removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    if not loc and ": " in reason:  # raised by a model-level validator that names its field
        loc, _, reason = reason.partition(": ")
    field = loc or None
    return (f"{loc}: {reason}{more}" if loc else f"{reason}{more}"), field


def json_type_name(value: object) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number"}
    if value is None:
        return "null"
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    return "a number" if isinstance(value, float) else type(value).__name__
