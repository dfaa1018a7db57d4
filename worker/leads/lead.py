"""The versioned lead message: what every producer sends and `leadsync.sync_lead` receives.

One rule for Constant Contact's limits (also in the JSON Schema, `leadsync schema`): free text
beyond a limit is cut and the field is named in `truncated`; identifiers and structure are never
cut, an over-limit or malformed one rejects the lead with `InvalidLeadError` naming the field.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from json.encoder import encode_basestring as _json_string  # C, as ensure_ascii=False
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from worker.base.errors import InvalidLeadError
from worker.base.json_limits import deeper_than
from worker.leads.lead_limits import (  # the limits stay importable from here (re-exported)
    _EMAIL,
    _LEAD_ID,
    ADDRESS_LIMITS,
    CUSTOM_FIELD_KEY_MAX,
    CUSTOM_FIELD_VALUE_MAX,
    CUSTOM_FIELDS_MAX,
    EMAIL_MAX,
    LEAD_ID_MAX,
    LEAD_MAX_DEPTH,
    LEAD_TEXT_MAX_CHARS,
    LIMITS_RULE,
    LIST_IDS_MAX,
    SOURCE_MAX,
    TEXT_LIMITS,
    _clean_text,
    apply_limits,
    describe_error,
    json_type_name,
    normalize_list_ids,
)

SCHEMA_VERSION = 1
LEAD_ID_PREFIX = "ld_"
__all__ = [
    "ADDRESS_LIMITS", "CUSTOM_FIELDS_MAX", "CUSTOM_FIELD_KEY_MAX", "CUSTOM_FIELD_VALUE_MAX",
    "EMAIL_MAX", "LEAD_ID_MAX", "LEAD_ID_PREFIX", "LEAD_MAX_DEPTH", "LEAD_TEXT_MAX_CHARS",
    "LIMITS_RULE", "LIST_IDS_MAX", "SCHEMA_VERSION", "SOURCE_MAX", "TEXT_LIMITS", "Address",
    "Lead", "_clean_text", "derive_lead_id", "lead_json_schema", "parse_lead",
]

class Address(BaseModel):
    """Maps to sign_up_form `street_address` / a contact's `street_addresses` entry.

    Street is cut to 255 characters, the other fields to 50 (the Lead's limits rule).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    kind: Literal["home", "work", "other"] = "work"
    street: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None

    def is_empty(self) -> bool:
        return not any((self.street, self.city, self.state, self.postal_code, self.country))


class Lead(BaseModel):
    """A sales lead, version 1 (frozen; unknown fields are rejected).

    Limits rule: free-text fields beyond Constant Contact's limits (names, company, job title
    50; phone 25; street 255; city/state/postal_code/country 50; custom field value 255) are cut
    to the limit and the field is named in `truncated` (shown in the delivery outcome and the
    log line). Identifiers and structure are never cut: an email over 50 characters, more than
    50 list ids, more than 25 custom fields or a malformed value rejects the lead.
    """

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        title="Lead",
        json_schema_extra={
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$comment": LIMITS_RULE,
        },
    )

    version: Literal[1] = Field(default=1, description="Schema version of the message.")
    lead_id: str = Field(
        default="",
        max_length=LEAD_ID_MAX,
        description=(
            "Idempotency key (printable ASCII, no spaces, at most 128 characters). When absent "
            "or empty it is derived from the content: 'ld_' + sha256 of the canonical JSON of "
            "every field except lead_id, received_at and truncated."
        ),
    )
    email: str = Field(
        max_length=EMAIL_MAX,
        description="Required. Trimmed and lower-cased; at most 50 characters (sign_up_form).",
    )
    first_name: str | None = Field(default=None, description="Cut to 50 characters.")
    last_name: str | None = Field(default=None, description="Cut to 50 characters.")
    phone: str | None = Field(default=None, description="Cut to 25 characters; needs a digit.")
    company: str | None = Field(default=None, description="Cut to 50 characters.")
    job_title: str | None = Field(default=None, description="Cut to 50 characters.")
    address: Address | None = None
    custom_fields: dict[str, str] = Field(
        default_factory=dict,
        max_length=CUSTOM_FIELDS_MAX,
        description=(
            "Key: a custom field UUID or its name (at most 50 characters); value cut to 255 "
            "characters. At most 25 entries."
        ),
    )
    list_ids: list[str] = Field(
        default_factory=list,
        max_length=LIST_IDS_MAX,
        description="Contact list UUIDs (at most 50); empty means LEADSYNC_LIST_IDS at delivery.",
    )
    consent: StrictBool = Field(
        default=False, description="True only when the person explicitly opted in."
    )
    source: str | None = Field(
        default=None,
        max_length=SOURCE_MAX,
        description="Where the lead came from ('webform', 'google-ads', ...).",
    )
    received_at: datetime | None = Field(
        default=None,
        description=(
            "When the producer got the lead (stored in UTC; a time without offset is taken as "
            "UTC). Set by enqueue_lead when absent; raw producers should send it."
        ),
    )
    truncated: list[str] = Field(
        default_factory=list,
        description="Fields cut to Constant Contact's limits (filled by leadsync).",
    )

    @model_validator(mode="before")
    @classmethod
    def _apply_limits(cls, data: Any) -> Any:
        """Cut free text to the limits and remember which fields were cut."""
        return apply_limits(data, Address) if isinstance(data, dict) else data

    @field_validator("email", mode="before")
    @classmethod
    def _normalize_email(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("email")
    @classmethod
    def _check_email(cls, value: str) -> str:
        if not _EMAIL.fullmatch(value):
            raise PydanticCustomError("email_syntax", "not a valid email address")
        return value

    @field_validator("lead_id")
    @classmethod
    def _check_lead_id(cls, value: str) -> str:
        value = value.strip()
        if value and not _LEAD_ID.fullmatch(value):
            raise PydanticCustomError("lead_id", "must be printable ASCII without spaces")
        return value

    @field_validator("phone")
    @classmethod
    def _check_phone(cls, value: str | None) -> str | None:
        if value is not None and not any(map(str.isdigit, value)):
            raise PydanticCustomError("phone", "has no digit")
        return value

    @field_validator("address")
    @classmethod
    def _drop_empty_address(cls, value: Address | None) -> Address | None:
        return None if value is not None and value.is_empty() else value

    @field_validator("list_ids")
    @classmethod
    def _check_list_ids(cls, value: list[str]) -> list[str]:
        return normalize_list_ids(value)

    @field_validator("received_at")
    @classmethod
    def _to_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _derive_lead_id(self) -> Lead:
        if not self.lead_id:
            # Frozen model: set once, here, before anyone can see the object.
            object.__setattr__(self, "lead_id", derive_lead_id(self))
        return self

    def to_json_dict(self) -> dict[str, Any]:
        """The lead as it travels: plain JSON types, every field present."""
        return self.model_dump(mode="json")


def derive_lead_id(lead: Lead) -> str:
    """'ld_' + sha256 of the canonical JSON of the content (same lead, same id, any producer).

    The canonical JSON is `json.dumps(lead.model_dump(mode="json", exclude={"lead_id",
    "received_at", "truncated"}), sort_keys=True, separators=(",", ":"), ensure_ascii=False)`,
    written here field by field in that (sorted) order with the json module's own string
    encoder: the same text at a fraction of the cost (tests/leads pin it against json.dumps).
    """
    address = lead.address
    fields = lead.custom_fields
    canonical = "".join((
        '{"address":',
        "null" if address is None else (
            f'{{"city":{_json_text(address.city)},"country":{_json_text(address.country)},'
            f'"kind":{_json_text(address.kind)},"postal_code":{_json_text(address.postal_code)},'
            f'"state":{_json_text(address.state)},"street":{_json_text(address.street)}}}'),
        f',"company":{_json_text(lead.company)},"consent":{"true" if lead.consent else "false"}',
        ',"custom_fields":{',
        ",".join(f"{_json_string(key)}:{_json_string(fields[key])}" for key in sorted(fields)),
        f'}},"email":{_json_string(lead.email)},"first_name":{_json_text(lead.first_name)}',
        f',"job_title":{_json_text(lead.job_title)},"last_name":{_json_text(lead.last_name)}',
        ',"list_ids":[', ",".join(map(_json_string, lead.list_ids)),
        f'],"phone":{_json_text(lead.phone)},"source":{_json_text(lead.source)}',
        f',"version":{int(lead.version)}}}',
    ))
    return LEAD_ID_PREFIX + hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _json_text(value: str | None) -> str:
    return "null" if value is None else _json_string(value)


def parse_lead(data: object) -> Lead:
    """Validate anything a producer sent (dict, JSON text or bytes, or a Lead).

    Raises InvalidLeadError(message, field=...) whose message names the field and the reason
    and never contains the value.
    """
    if isinstance(data, Lead):
        return data
    if isinstance(data, bytes | bytearray):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidLeadError("lead is not UTF-8 text") from None
    if isinstance(data, str):
        if len(data) > LEAD_TEXT_MAX_CHARS:
            raise InvalidLeadError(f"lead is longer than {LEAD_TEXT_MAX_CHARS} characters")
        try:
            data = json.loads(data)
        except RecursionError:
            raise InvalidLeadError(f"lead is nested deeper than {LEAD_MAX_DEPTH} levels") from None
        except ValueError:
            raise InvalidLeadError("lead is not valid JSON") from None
    if deeper_than(data, LEAD_MAX_DEPTH):
        # Nothing in a lead nests this far; refused before any recursive walk meets it.
        raise InvalidLeadError(f"lead is nested deeper than {LEAD_MAX_DEPTH} levels")
    if not isinstance(data, dict):
        raise InvalidLeadError(f"lead must be a JSON object, not {json_type_name(data)}")
    if data.get("version", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise InvalidLeadError(
            f"version: unsupported lead version (this worker reads {SCHEMA_VERSION})",
            field="version",
        )
    try:
        return Lead.model_validate(data)
    except ValidationError as exc:
        message, field = describe_error(exc)
        raise InvalidLeadError(message, field=field) from None


def lead_json_schema() -> dict[str, Any]:
    """The JSON Schema producers validate against (`leadsync schema`)."""
    return Lead.model_json_schema()
