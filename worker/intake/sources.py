"""Each source's payload mapped to the lead, as data: a table of `their name -> lead path`.

The maps only move values; `worker.leads.lead.parse_lead` validates the result exactly as it does
for
any producer, so the rules (limits, lead ids) are the same whatever the door.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.base.errors import InvalidLeadError

# HTML forms (application/x-www-form-urlencoded): field name -> lead path.
FORM_FIELDS: dict[str, str] = {
    "email": "email",
    "first_name": "first_name",
    "last_name": "last_name",
    "phone": "phone",
    "company": "company",
    "job_title": "job_title",
    "street": "address.street",
    "city": "address.city",
    "state": "address.state",
    "postal_code": "address.postal_code",
    "country": "address.country",
    "consent": "consent",
    "list_ids": "list_ids",
}
FORM_CUSTOM_PREFIX = "cf."  # <input name="cf.budget"> -> custom_fields["budget"]
FORM_CONTROL_PREFIX = "_"  # _key, _next, _gotcha: read by the intake, never part of the lead
HONEYPOT_FIELD = "_gotcha"  # hidden from people by CSS; a bot that fills it is dropped quietly
TRUE_WORDS = frozenset({"on", "yes", "true", "1", "y"})

# Google Ads lead form webhooks: user_column_data[].column_id -> lead path.
GOOGLE_COLUMNS: dict[str, str] = {
    "FULL_NAME": "full_name",  # split below when FIRST_NAME/LAST_NAME are not asked
    "FIRST_NAME": "first_name",
    "LAST_NAME": "last_name",
    "EMAIL": "email",
    "WORK_EMAIL": "email",
    "PHONE_NUMBER": "phone",
    "WORK_PHONE": "phone",
    "COMPANY_NAME": "company",
    "JOB_TITLE": "job_title",
    "STREET_ADDRESS": "address.street",
    "CITY": "address.city",
    "REGION": "address.state",
    "POSTAL_CODE": "address.postal_code",
    "COUNTRY": "address.country",
}
GOOGLE_SOURCE = "google-ads"
GOOGLE_LEAD_ID_PREFIX = "gads_"


def _put(lead: dict[str, Any], path: str, value: Any) -> None:
    head, _, rest = path.partition(".")
    if rest:
        lead.setdefault(head, {})[rest] = value
    elif head not in lead:  # the first column wins (EMAIL over WORK_EMAIL)
        lead[head] = value


def form_to_lead(fields: Mapping[str, str], source: str) -> dict[str, Any]:
    """An HTML form's fields as a lead dict (control fields `_...` dropped, unknown ones too)."""
    lead: dict[str, Any] = {"source": source}
    custom: dict[str, str] = {}
    for name, value in fields.items():
        if name.startswith(FORM_CONTROL_PREFIX):
            continue
        if name.startswith(FORM_CUSTOM_PREFIX):
            if value.strip():
                custom[name[len(FORM_CUSTOM_PREFIX):]] = value
            continue
        path = FORM_FIELDS.get(name)
        if path == "consent":
            lead["consent"] = value.strip().lower() in TRUE_WORDS
        elif path == "list_ids":
            lead["list_ids"] = value.replace(",", " ").split()
        elif path is not None and value.strip():
            _put(lead, path, value)
    if custom:
        lead["custom_fields"] = custom
    return lead


def google_to_lead(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A Google Ads lead form webhook body as a lead dict.

    Columns not in GOOGLE_COLUMNS are left out: a custom field unknown to the Constant Contact
    account would dead-letter the lead, so a question is mapped on purpose, by adding
    `"ITS_COLUMN_ID": "custom_fields.<name>"` to the table.
    """
    columns = payload.get("user_column_data")
    if not isinstance(columns, list):
        raise InvalidLeadError("user_column_data: required list", field="user_column_data")
    lead: dict[str, Any] = {"source": GOOGLE_SOURCE}
    for item in columns:
        if not isinstance(item, dict) or not isinstance(item.get("column_id"), str):
            raise InvalidLeadError("user_column_data: each item needs a column_id",
                                   field="user_column_data")
        value = item.get("string_value")
        if not isinstance(value, str) or not value.strip():
            continue
        path = GOOGLE_COLUMNS.get(item["column_id"])
        if path is not None:
            _put(lead, path, value)
    full = lead.pop("full_name", None)
    if full and "first_name" not in lead and "last_name" not in lead:
        first, _, last = full.strip().partition(" ")
        lead["first_name"] = first
        if last.strip():
            lead["last_name"] = last
    if isinstance(payload.get("lead_id"), str) and payload["lead_id"]:
        lead["lead_id"] = GOOGLE_LEAD_ID_PREFIX + payload["lead_id"]
    return lead
