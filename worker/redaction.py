"""Keep personal data and secrets out of logs and exceptions.

`redact_*` shorten one known value; `scrub` removes anything that looks like a JWT, a bearer
token, an email address or a phone number from free text (the last line of defence).
"""

from __future__ import annotations

import hashlib
import re

_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
_SECRET_FIELD = re.compile(
    r"(?i)([\"']?(?:access_token|refresh_token|client_secret|device_code|code|token|"
    r"code_verifier|password)[\"']?\s*[:=]\s*[\"']?)([^\"'&\s,}]{6,})"
)
_INTAKE_KEY = re.compile(r"lsk_[A-Za-z0-9_-]{6,}")  # `leadsync intake keys create` keys
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
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
    """Remove anything secret- or person-shaped from free text."""
    text = _JWT.sub("<jwt>", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} <redacted>", text)
    text = _SECRET_FIELD.sub(lambda m: f"{m.group(1)}<redacted>", text)
    text = _INTAKE_KEY.sub("lsk_<redacted>", text)
    text = _EMAIL.sub(lambda m: redact_email(m.group(0)), text)
    return _PHONE.sub(_phone_or_date, text)


def _phone_or_date(match: re.Match[str]) -> str:
    value = match.group(0)
    if _DATE.fullmatch(value) or len(re.sub(r"\D", "", value)) < 7:
        return value
    return redact_phone(value)
