"""Request bodies for Constant Contact, built from a lead (pure functions, no I/O).

Consent decides the path (docs/notes/delivery.md):
- `consent=True`: `POST /contacts/sign_up_form`, which sets `permission_to_send` to explicit.
- `consent=False`: never sign_up_form (it would opt the person in, even an unsubscribed one).
  An existing contact is updated with `PUT /contacts/{id}` keeping its permission as it is; a new
  one is created with `POST /contacts`, `create_source: Account`, permission `implicit` (what a
  bulk import by the account gives too).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.leads.lead import Lead

SOURCE = "Account"  # staff/sync-entered contacts (facts sheet 4.2)
MAX_PHONES = 3
MAX_ADDRESSES = 3
PHONE_KIND = "work"
# Top-level fields a PUT overwrites with null when left out (facts sheet 4.4): carried over.
PUT_SCALARS = ("first_name", "last_name", "job_title", "company_name",
               "birthday_month", "birthday_day", "anniversary")


def _scalars(lead: Lead) -> dict[str, str]:
    values = {
        "first_name": lead.first_name,
        "last_name": lead.last_name,
        "job_title": lead.job_title,
        "company_name": lead.company,
    }
    return {name: value for name, value in values.items() if value}


def _address(lead: Lead) -> dict[str, str] | None:
    if lead.address is None:
        return None
    data = lead.address.model_dump(exclude_none=True)
    return {str(k): str(v) for k, v in data.items()}


def _custom_fields(values: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"custom_field_id": field_id, "value": value} for field_id, value in values.items()]


def sign_up_form_body(lead: Lead, list_ids: list[str],
                      custom_fields: Mapping[str, str]) -> dict[str, Any]:
    """`ContactCreateOrUpdateInput`: email as a string, one phone, one address."""
    body: dict[str, Any] = {"email_address": lead.email, "list_memberships": list_ids,
                            **_scalars(lead)}
    if lead.phone:
        body["phone_number"] = lead.phone
    address = _address(lead)
    if address:
        body["street_address"] = address
    if custom_fields:
        body["custom_fields"] = _custom_fields(custom_fields)
    return body


def create_body(lead: Lead, list_ids: list[str],
                custom_fields: Mapping[str, str]) -> dict[str, Any]:
    """`ContactPostRequest` for a person who did not opt in explicitly."""
    body: dict[str, Any] = {
        "email_address": {"address": lead.email, "permission_to_send": "implicit"},
        "create_source": SOURCE,
        "list_memberships": list_ids,
        **_scalars(lead),
    }
    if lead.phone:
        body["phone_numbers"] = [{"phone_number": lead.phone, "kind": PHONE_KIND}]
    address = _address(lead)
    if address:
        body["street_addresses"] = [address]
    if custom_fields:
        body["custom_fields"] = _custom_fields(custom_fields)
    return body


def _merge(existing: list[dict[str, Any]], new: list[dict[str, Any]], key: str,
           cap: int) -> list[dict[str, Any]]:
    """Existing items, with those sharing `key` with a new item replaced by it; capped."""
    replaced = {item.get(key) for item in new}
    kept = [item for item in existing if item.get(key) not in replaced]
    return (new + kept)[:cap]


def _strip(items: list[dict[str, Any]], allowed: tuple[str, ...]) -> list[dict[str, Any]]:
    """Resources come back with read-only ids and stamps; a PUT takes only writable fields."""
    return [{k: v for k, v in item.items() if k in allowed and v is not None} for item in items]


def update_body(lead: Lead, existing: Mapping[str, Any], list_ids: list[str],
                custom_fields: Mapping[str, str]) -> dict[str, Any]:
    """`ContactPutRequest` for an existing contact: every field it had, plus the lead's.

    The permission to send is carried over unchanged: without explicit consent leadsync never
    opts anybody in, nor out.
    """
    email = dict(existing.get("email_address") or {})
    body: dict[str, Any] = {
        "email_address": {"address": email.get("address") or lead.email,
                          **({"permission_to_send": email["permission_to_send"]}
                             if email.get("permission_to_send") else {})},
        "update_source": SOURCE,
    }
    for name in PUT_SCALARS:
        if existing.get(name) is not None:
            body[name] = existing[name]
    body.update(_scalars(lead))
    lists = list(existing.get("list_memberships") or [])
    body["list_memberships"] = (lists + [i for i in list_ids if i not in lists])[:50]
    fields = _strip(list(existing.get("custom_fields") or []), ("custom_field_id", "value"))
    body["custom_fields"] = _merge(fields, _custom_fields(custom_fields), "custom_field_id", 25)
    phones = _strip(list(existing.get("phone_numbers") or []), ("phone_number", "kind"))
    if lead.phone and lead.phone not in {p.get("phone_number") for p in phones}:
        phones = _merge(phones, [{"phone_number": lead.phone, "kind": PHONE_KIND}], "kind",
                        MAX_PHONES)
    body["phone_numbers"] = phones
    addresses = _strip(list(existing.get("street_addresses") or []),
                       ("kind", "street", "city", "state", "postal_code", "country"))
    address = _address(lead)
    if address:
        addresses = _merge(addresses, [address], "kind", MAX_ADDRESSES)
    body["street_addresses"] = addresses
    return {k: v for k, v in body.items() if v != []}
