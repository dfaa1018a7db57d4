"""The common lead without pydantic: a plain dict of plain values, normalized straight to JSON.

Producers queue tens of thousands of leads a second, and most are dicts of strings. For those,
`plain_lead` applies the same rules as `Lead` (lead.py, lead_limits.py) in one pass and gives
what the message needs: the lead id, the lead as `Lead.model_dump_json()` writes it, the
redacted repr. It never rejects: anything unusual (a wrong type, an unknown field, a value the
model would refuse, a non-canonical UUID, a lone surrogate) returns None and the caller takes
`parse_lead`, so every error and its message comes from the model alone. Both paths give the
same id and the same text for every lead this one accepts (tests/leads/test_lead_fast.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from datetime import UTC, datetime
from itertools import pairwise
from json.encoder import encode_basestring as _json  # C, as ensure_ascii=False (and pydantic)
from typing import Any, NamedTuple

from pydantic import TypeAdapter, ValidationError

from worker.leads.lead import LEAD_ID_PREFIX, SCHEMA_VERSION, Lead
from worker.leads.lead_limits import (
    _CANONICAL_UUID,
    _EMAIL,
    _LEAD_ID,
    _UUID_MIN_CHARS,  # shorter custom field keys are names, never UUIDs
    ADDRESS_LIMITS,
    CUSTOM_FIELD_KEY_MAX,
    CUSTOM_FIELD_VALUE_MAX,
    CUSTOM_FIELDS_MAX,
    EMAIL_MAX,
    LEAD_ID_MAX,
    LIST_IDS_MAX,
    SOURCE_MAX,
    TEXT_LIMITS,
)
from worker.leads.wire import lead_argsrepr

# The model's fields, spelled out: a field added to Lead must be added here too (tested), or
# this path would pass it over.
_FIELDS = frozenset({"version", "lead_id", "email", "first_name", "last_name", "phone", "company",
                     "job_title", "address", "custom_fields", "list_ids", "consent", "source",
                     "received_at", "truncated"})
_ADDRESS_FIELDS = frozenset({"kind", *ADDRESS_LIMITS})
_KINDS = frozenset({"home", "work", "other"})
_NO_LABELS: list[str] = []  # never changed: `truncated` absent
_TIME_TYPES = frozenset({datetime, str, int, float})  # not bool, not subclasses
_DATETIME = TypeAdapter(datetime)  # the Lead's own parser and JSON form for received_at
_FIRST_MAX, _LAST_MAX, _COMPANY_MAX, _JOB_MAX, _PHONE_MAX = (
    TEXT_LIMITS[name] for name in ("first_name", "last_name", "company", "job_title", "phone"))


class PlainLead(NamedTuple):
    """What a message needs of one valid lead."""

    lead_id: str
    json: str  # exactly `parse_lead(data).model_dump_json()`
    argsrepr: str  # exactly `redacted_argsrepr([lead])`
    truncated: bool
    consent: bool


def received_at_json(moment: datetime) -> str:
    """A `received_at` as the lead's JSON writes it (UTC, quoted); once per batch for `now`."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return _DATETIME.dump_json(moment).decode()


def _text(value: Any, limit: int, label: str, cut: list[str]) -> str | None:
    """`lead_limits._cut_fields` for one given value (not None) that must be a str."""
    if type(value) is not str:
        raise _NotPlain
    text = " ".join(value.split())
    if len(text) > limit:
        text = text[:limit].rstrip()
        cut.append(label)
    return text or None


def _text_json(value: Any, limit: int, label: str, cut: list[str]) -> str:
    """`_text` as JSON, 'null' when absent or empty (one call for the four name fields)."""
    if value is None:
        return "null"
    text = _text(value, limit, label, cut)
    return _json(text) if text else "null"


class _NotPlain(Exception):
    """Internal: this lead takes the model's path."""


def _j(value: str | None) -> str:
    return "null" if value is None else _json(value)


def _address(value: Any, cut: list[str]) -> tuple[str, str]:
    """(JSON in the model's field order, JSON in sorted order) of an address, or 'null' twice."""
    if type(value) is not dict or not value.keys() <= _ADDRESS_FIELDS:
        raise _NotPlain
    kind = value.get("kind", "work")
    if type(kind) is not str or kind not in _KINDS:
        raise _NotPlain
    get = value.get
    parts = {}
    for name, limit in ADDRESS_LIMITS.items():
        raw = get(name)
        parts[name] = None if raw is None else _text(raw, limit, f"address.{name}", cut)
    if not any(parts.values()):
        return "null", "null"
    street, city, state = _j(parts["street"]), _j(parts["city"]), _j(parts["state"])
    postal, country, kind = _j(parts["postal_code"]), _j(parts["country"]), _json(kind)
    return (f'{{"kind":{kind},"street":{street},"city":{city},"state":{state},'
            f'"postal_code":{postal},"country":{country}}}',
            f'{{"city":{city},"country":{country},"kind":{kind},"postal_code":{postal},'
            f'"state":{state},"street":{street}}}')


def _custom_fields(value: Any, cut: list[str]) -> tuple[str, str]:
    """(JSON in the given order, JSON with sorted keys) of the custom fields."""
    if type(value) is not dict or len(value) > CUSTOM_FIELDS_MAX:
        raise _NotPlain
    if not value:
        return "{}", "{}"
    pairs: list[tuple[str, str]] = []  # (name, '"name":"value"')
    for key, text in value.items():
        if type(key) is not str or type(text) is not str:
            raise _NotPlain
        name = key.strip()
        if len(name) >= _UUID_MIN_CHARS and not _CANONICAL_UUID.fullmatch(name):
            with contextlib.suppress(ValueError):  # a name, not a UUID: kept as given
                name = str(uuid.UUID(name))
        if not name or len(name) > CUSTOM_FIELD_KEY_MAX:
            raise _NotPlain
        text = text.strip()
        if len(text) > CUSTOM_FIELD_VALUE_MAX:
            text = text[:CUSTOM_FIELD_VALUE_MAX].rstrip()
            cut.append(f"custom_fields.{name}")
        pairs.append((name, f"{_json(name)}:{_json(text)}"))
    given = "{" + ",".join([pair for _name, pair in pairs]) + "}"
    if len(pairs) == 1:
        return given, given
    pairs.sort()
    for (name, _pair), (after, _) in pairwise(pairs):
        if name == after:
            raise _NotPlain  # two keys the same after trimming
    return given, "{" + ",".join([pair for _name, pair in pairs]) + "}"


def _list_ids(value: Any) -> str:
    if type(value) is not list or len(value) > LIST_IDS_MAX:
        raise _NotPlain
    ids: dict[str, None] = {}
    for raw in value:
        if type(raw) is not str:
            raise _NotPlain
        raw = raw.strip()
        if not _CANONICAL_UUID.fullmatch(raw):
            try:
                raw = str(uuid.UUID(raw))
            except ValueError:
                raise _NotPlain from None
        ids[raw] = None
    return "[" + ",".join(map(_json, ids)) + "]"


def _received_at(value: Any) -> str:
    if type(value) not in _TIME_TYPES:
        raise _NotPlain
    try:
        moment = _DATETIME.validate_python(value)
    except ValidationError:
        raise _NotPlain from None
    return received_at_json(moment)


def plain_lead(data: dict[str, Any], now_json: str) -> PlainLead | None:
    """The lead's id, JSON and repr when `data` is plain; None means "ask parse_lead".

    `now_json` is `received_at_json(now)`, stamped when the lead has no `received_at`.
    """
    try:
        return _plain_lead(data, now_json)
    except _NotPlain:
        return None


def _plain_lead(data: dict[str, Any], now_json: str) -> PlainLead | None:
    if not data.keys() <= _FIELDS:
        return None
    get = data.get
    if "version" in data and (type(data["version"]) is not int
                              or data["version"] != SCHEMA_VERSION):
        return None
    given_cut = get("truncated", _NO_LABELS)
    if given_cut is not _NO_LABELS and (type(given_cut) is not list
                                        or not all(type(label) is str for label in given_cut)):
        return None
    lead_id = ""
    if "lead_id" in data:
        lead_id = data["lead_id"]
        if type(lead_id) is not str or len(lead_id) > LEAD_ID_MAX:
            return None
        lead_id = lead_id.strip()
        if lead_id and not _LEAD_ID.fullmatch(lead_id):
            return None
    email = get("email")
    if type(email) is not str:
        return None
    email = email.strip().lower()
    if len(email) > EMAIL_MAX or not email.isascii() or not _EMAIL.fullmatch(email):
        return None
    consent = get("consent", False)
    if type(consent) is not bool:
        return None
    cut: list[str] = []  # labels in the model's order: TEXT_LIMITS, address, custom fields
    first = _text_json(get("first_name"), _FIRST_MAX, "first_name", cut)
    last = _text_json(get("last_name"), _LAST_MAX, "last_name", cut)
    company = _text_json(get("company"), _COMPANY_MAX, "company", cut)
    job = _text_json(get("job_title"), _JOB_MAX, "job_title", cut)
    phone = get("phone")
    if phone is not None:
        phone = _text(phone, _PHONE_MAX, "phone", cut)
        if phone is not None and not any(map(str.isdigit, phone)):
            return None
    source = get("source")
    if source is not None:  # cleaned, never cut: over the limit rejects
        if type(source) is not str:
            return None
        source = " ".join(source.split()) or None
        if source is not None and len(source) > SOURCE_MAX:
            return None
    address, address_sorted = ("null", "null") if get("address") is None else _address(
        data["address"], cut)
    fields, fields_sorted = ("{}", "{}") if "custom_fields" not in data else _custom_fields(
        data["custom_fields"], cut)
    list_ids = "[]" if "list_ids" not in data else _list_ids(data["list_ids"])
    received = now_json if get("received_at") is None else _received_at(data["received_at"])
    phone_json, source_json, email_json = _j(phone), _j(source), _json(email)
    consent_json = "true" if consent else "false"
    if not lead_id:
        canonical = (
            f'{{"address":{address_sorted},"company":{company},"consent":{consent_json},'
            f'"custom_fields":{fields_sorted},"email":{email_json},"first_name":{first},'
            f'"job_title":{job},"last_name":{last},"list_ids":{list_ids},"phone":{phone_json},'
            f'"source":{source_json},"version":{SCHEMA_VERSION}}}')
        try:
            encoded = canonical.encode()
        except UnicodeEncodeError:  # a lone surrogate: the model names the field
            return None
        lead_id = LEAD_ID_PREFIX + hashlib.sha256(encoded).hexdigest()[:32]
    if given_cut:  # a lead that went through leadsync before: its labels first
        cut = list(dict.fromkeys([*given_cut, *cut])) if cut else given_cut
    truncated = "[" + ",".join(map(_json, cut)) + "]" if cut else "[]"
    body = (f'{{"version":{SCHEMA_VERSION},"lead_id":{_json(lead_id)},"email":{email_json},'
            f'"first_name":{first},"last_name":{last},"phone":{phone_json},'
            f'"company":{company},"job_title":{job},"address":{address},'
            f'"custom_fields":{fields},"list_ids":{list_ids},"consent":{consent_json},'
            f'"source":{source_json},"received_at":{received},"truncated":{truncated}}}')
    if not body.isascii():
        try:
            body.encode()
        except UnicodeEncodeError:
            return None
    return PlainLead(lead_id, body, lead_argsrepr(lead_id, email, source), bool(cut), consent)


def plain_of(lead: Lead) -> PlainLead:
    """The same for a lead the model validated (the path for everything `plain_lead` declines)."""
    return PlainLead(lead.lead_id, lead.model_dump_json(), lead_argsrepr(
        lead.lead_id, lead.email, lead.source), bool(lead.truncated), lead.consent)
