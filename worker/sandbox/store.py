"""The account's data: contacts (soft-deleted ones kept), contact lists and custom fields.

Contacts are kept as ContactResource-shaped dicts; emails are matched case-insensitively.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from worker.sandbox.clock import iso

SUBRESOURCES = ("custom_fields", "phone_numbers", "street_addresses", "list_memberships",
                "taggings", "notes")
SCALARS = ("first_name", "last_name", "job_title", "company_name", "birthday_month",
           "birthday_day", "anniversary")


class Store:
    def __init__(self, default_list_id: str, default_list_name: str, now: float) -> None:
        self.contacts: dict[str, dict[str, Any]] = {}  # contact_id -> resource (insert order)
        self.by_email: dict[str, str] = {}  # lower-case address -> contact_id
        self.lists: dict[str, dict[str, Any]] = {}
        self.custom_fields: dict[str, dict[str, Any]] = {}
        self.default_list_id = default_list_id
        self.add_list(default_list_name, "The account's default list.", False, now,
                      list_id=default_list_id)

    # --- lists and custom fields ------------------------------------------------------------
    def add_list(self, name: str, description: str | None, favorite: bool, now: float,
                 list_id: str | None = None) -> dict[str, Any]:
        record: dict[str, Any] = {"list_id": list_id or str(uuid.uuid4()), "name": name,
                                  "favorite": favorite, "created_at": iso(now),
                                  "updated_at": iso(now)}
        if description is not None:
            record["description"] = description
        self.lists[record["list_id"]] = record
        return record

    def list_named(self, name: str) -> dict[str, Any] | None:
        wanted = name.strip().lower()
        return next((item for item in self.lists.values()
                     if item["name"].strip().lower() == wanted), None)

    def membership_counts(self, include_deleted: bool) -> Counter[str]:
        counts: Counter[str] = Counter()
        for contact in self.contacts.values():
            if contact.get("deleted_at") and not include_deleted:
                continue
            counts.update(contact.get("list_memberships", []))
        return counts

    def add_custom_field(self, label: str, kind: str, now: float,
                         extra: dict[str, Any]) -> dict[str, Any]:
        record = {"custom_field_id": str(uuid.uuid4()), "label": label,
                  "name": label.replace(" ", "_"), "type": kind, "created_at": iso(now),
                  "updated_at": iso(now), **extra}
        self.custom_fields[record["custom_field_id"]] = record
        return record

    def custom_field_named(self, name: str) -> dict[str, Any] | None:
        wanted = name.strip().lower()
        return next((field for field in self.custom_fields.values()
                     if field["name"].lower() == wanted or field["label"].lower() == wanted),
                    None)

    # --- contacts -----------------------------------------------------------------------------
    def find_email(self, address: str) -> dict[str, Any] | None:
        contact_id = self.by_email.get(address.strip().lower())
        return None if contact_id is None else self.contacts[contact_id]

    def insert(self, contact: dict[str, Any]) -> dict[str, Any]:
        self.contacts[contact["contact_id"]] = contact
        email = contact.get("email_address", {}).get("address")
        if email:
            self.by_email[email.lower()] = contact["contact_id"]
        return contact

    def change_email(self, contact: dict[str, Any], address: str) -> None:
        old = contact.get("email_address", {}).get("address")
        if old:
            self.by_email.pop(old.lower(), None)
        self.by_email[address.lower()] = contact["contact_id"]

    def new_contact(self, now: float, create_source: str) -> dict[str, Any]:
        stamp = iso(now)
        contact: dict[str, Any] = {"contact_id": str(uuid.uuid4()),
                                   "create_source": create_source, "created_at": stamp,
                                   "updated_at": stamp}
        for name in SUBRESOURCES:
            contact[name] = []
        return contact

    def active(self) -> int:
        return sum(1 for contact in self.contacts.values() if not contact.get("deleted_at"))


def email_object(address: str, permission: str, source: str, now: float,
                 confirm_status: str = "off") -> dict[str, Any]:
    stamp = iso(now)
    record = {"address": address, "permission_to_send": permission, "created_at": stamp,
              "updated_at": stamp, "opt_in_source": source, "confirm_status": confirm_status}
    if permission in ("explicit", "implicit"):
        record["opt_in_date"] = stamp
    return record


def resource(contact: dict[str, Any], include: set[str] | None) -> dict[str, Any]:
    """The ContactResource answer; subresources only when included (None: all of them)."""
    answer: dict[str, Any] = {}
    for name, value in contact.items():
        if name.startswith("_") or value is None:
            continue
        if name in SUBRESOURCES and include is not None and name not in include:
            continue
        answer[name] = value
    return answer
