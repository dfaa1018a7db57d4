"""Keep personal data and secrets out of logs and exceptions.

`redact_*` shorten one known value; `scrub` removes anything that looks like a JWT, a bearer
token, an email address (also URL-encoded) or a phone number from free text, and the value of
every lead field written as `key: value` or `key=value` (a repr or JSON of a lead), so names and
custom fields go too (the last line of defence). `scrub_value` does the same for structures.
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections.abc import Mapping
from typing import Any

_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
_SECRET_FIELD = re.compile(
    r"(?i)([\"']?(?:access_token|refresh_token|client_secret|device_code|code|token|"
    r"code_verifier|password)[\"']?\s*[:=]\s*[\"']?)([^\"'&\s,}]{6,})"
)
_INTAKE_KEY = re.compile(r"lsk_[A-Za-z0-9_-]{6,}")  # `leadsync intake keys create` keys
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_EMAIL_URL = re.compile(r"[A-Za-z0-9._+-]+%40[A-Za-z0-9.-]+\.[A-Za-z]{2,}")  # in query strings

# Lead fields whose value is personal data, by name; `address` and `custom_fields` are objects.
PERSONAL_FIELDS = frozenset({"email", "first_name", "last_name", "phone", "company", "job_title",
                             "street", "city", "postal_code", "country", "input_value"})
PERSONAL_OBJECTS = frozenset({"address", "custom_fields"})
# Celery's task context (`data` extra, log arguments): the task's arguments as a repr.
TASK_ARGUMENTS = frozenset({"args", "kwargs", "argsrepr", "kwargsrepr"})
REDACTED = "<redacted>"
_KEYED = PERSONAL_FIELDS | PERSONAL_OBJECTS | TASK_ARGUMENTS  # keys scrub_value treats apart
# A quoted value as Python or JSON writes it, or as JSON inside a JSON string (\"...\"); an
# unterminated one (a truncated repr) runs to the end of the text: over-redaction is safe.
_QUOTED = (r'(?:\\"(?:\\\\(?:\\\\|\\"|[^\\])|\\[^"\\]|[^\\])*(?:\\"|$)'
           r"|\"(?:[^\"\\]|\\.)*(?:\"|$)|'(?:[^'\\]|\\.)*(?:'|$))")
_KEY = r"(?<![A-Za-z0-9_])(\\*[\"']?)({names})\1\s*[:=]\s*"
_FIELD_VALUE = re.compile(_KEY.format(names="|".join(sorted(PERSONAL_FIELDS))) + _QUOTED,
                          re.DOTALL)
_OBJECT_VALUE = re.compile(
    _KEY.format(names="|".join(sorted(PERSONAL_OBJECTS)))
    + r"\{(?:" + _QUOTED + r"|[^{}'\"\\]|\\(?!\"))*(?:\}|$)", re.DOTALL)
_FIELD_NAMES = tuple(sorted(PERSONAL_FIELDS))
# Every name _SECRET_FIELD matches holds one of these (lower case: it ignores case).
_SECRET_WORDS = ("token", "secret", "code", "password")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_PHONE = re.compile(r"(?<![\w-])\+?\d[\d ().-]{6,}\d(?![\w-])")


def fingerprint(value: str) -> str:
    """A short stable hash: lets logs correlate a value without revealing it."""
    return hashlib.sha256(value.encode()).hexdigest()[:10]


def redact_email(email: str) -> str:
    """`j***@e***.com`: enough to eyeball, not enough to contact."""
    local, _, domain = email.partition("@")
    if not domain:
        return "***"
    host, _, tld = domain.rpartition(".")
    return f"{local[:1]}***@{(host or tld)[:1]}***.{tld if host else ''}".rstrip(".")


def redact_phone(phone: str) -> str:
    digits = re.sub(r"\D", "", phone)
    return f"***{digits[-2:]}" if len(digits) >= 4 else "***"


def redact_token(token: str | None) -> str:
    if not token:
        return "<none>"
    return f"<token {fingerprint(token)}>"


def scrub(text: str) -> str:
    """Remove anything secret- or person-shaped from free text.

    Each pattern runs only when the text holds a substring that pattern cannot match without
    (an `@`, a field's name, ...): most log text holds none, and the patterns cost 80 µs on a
    150-character outcome line against 10 µs with the checks (the phone pattern still runs)."""
    if ":" in text or "=" in text:  # the three `key: value` patterns need one
        if "address" in text or "custom_fields" in text:
            text = _OBJECT_VALUE.sub(
                lambda m: f"{m.group(1)}{m.group(2)}{m.group(1)}: {{{REDACTED}}}", text)
        if any(name in text for name in _FIELD_NAMES):
            text = _FIELD_VALUE.sub(_field_value, text)
    if "%40" in text:
        text = _EMAIL_URL.sub("<email>", text)
    if "eyJ" in text:
        text = _JWT.sub("<jwt>", text)
    lower = text.lower()
    if "bearer" in lower or "basic" in lower:
        text = _BEARER.sub(lambda m: f"{m.group(1)} <redacted>", text)
        lower = text.lower()
    if (":" in text or "=" in text) and any(word in lower for word in _SECRET_WORDS):
        text = _SECRET_FIELD.sub(lambda m: f"{m.group(1)}<redacted>", text)
    if "lsk_" in text:
        text = _INTAKE_KEY.sub("lsk_<redacted>", text)
    if "@" in text:
        text = _EMAIL.sub(lambda m: redact_email(m.group(0)), text)
    return _PHONE.sub(_phone_or_date, text) if len(text) >= 8 else text  # its shortest match


def _field_value(match: re.Match[str]) -> str:
    if "***" in match.group(0):  # already masked by redact_email / redact_phone: keep
        return match.group(0)
    return f"{match.group(1)}{match.group(2)}{match.group(1)}: {REDACTED}"


def _phone_or_date(match: re.Match[str]) -> str:
    value = match.group(0)
    if _DATE.fullmatch(value) or len(re.sub(r"\D", "", value)) < 7:
        return value
    return redact_phone(value)


def scrub_value(value: Any, key: str | None = None) -> Any:
    """`scrub` for structures (log extras, log arguments): lead fields by name, task arguments
    of Celery's records as their redacted repr, every string scrubbed. Returns a copy."""
    if key is None or key not in _KEYED:  # the common case first: a log field's plain value
        if isinstance(value, str):
            return scrub(value)
        if value is None or isinstance(value, bool | int | float):
            return value
    if key in PERSONAL_OBJECTS and isinstance(value, Mapping):
        return {str(k): REDACTED for k in value}
    if key in PERSONAL_FIELDS and value not in (None, ""):
        return REDACTED
    if key in TASK_ARGUMENTS:
        return redact_task_arguments(value)
    if isinstance(value, Mapping):
        return {k: scrub_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [scrub_value(v) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, bytes):
        return scrub(value.decode("utf-8", "replace"))
    if isinstance(value, str):
        return scrub(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return scrub(str(value))


def redact_task_arguments(value: Any) -> str:
    """A task's arguments (or Celery's repr of them) as ids only: a lead shows its lead_id and a
    masked email (worker.leads.wire), anything else its type; what cannot be read is withheld."""
    from worker.leads.wire import redacted_argsrepr, redacted_kwargsrepr  # wire imports this module

    if isinstance(value, str | bytes):
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        if not text.strip():
            return text
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return REDACTED
        if _already_redacted(value):
            return scrub(text)
    if isinstance(value, Mapping):
        return redacted_kwargsrepr({str(k): v for k, v in value.items()})
    if isinstance(value, list | tuple):
        return redacted_argsrepr(list(value))
    return f"<{type(value).__name__}>"


def _already_redacted(value: Any) -> bool:
    """True for the repr worker.leads.wire writes into `argsrepr` (ids and masked emails only)."""
    items = value if isinstance(value, list | tuple) else [value]
    return all(isinstance(item, dict) and set(item) <= {"lead_id", "email", "source", "invalid"}
               and "***" in str(item.get("email", "***")) for item in items)
