"""Import rows from leads, and batches packed under Constant Contact's limits (pure, no I/O).

A `contacts_json_import` row names its fields flat (facts sheet 4.6): `email`, the names,
`work_phone` (the single path sends the lead's one phone as kind `work`), the address as
`street`/`city`/`state`/`zip`/`country`, custom fields as `cf:<name>`. The Lead model has already
cut every value to Constant Contact's limits, so the rows carry the same values the single path
sends. Sizes are measured on the encoded JSON, as sent, so a batch never reaches the 4 MB past
which Constant Contact silently drops the rest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from worker.leads.lead import Lead

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
ADDRESS_KEYS = {"street": "street", "city": "city", "state": "state", "postal_code": "zip",
                "country": "country"}
# The envelope around the rows: {"import_data":[...],"list_ids":[...]} (ids measured apart).
ENVELOPE_BYTES = len('{"import_data":[],"list_ids":}')


def encode(value: Any) -> str:
    """The one encoding used to measure and to send (compact, ASCII: bytes == characters)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True)


def field_name(key: str, names_by_id: Mapping[str, str]) -> str:
    """`cf:<name>`: a UUID key becomes the field's name, a label its name (spaces -> _)."""
    if _UUID.match(key):
        return "cf:" + names_by_id.get(key.lower(), key)
    return "cf:" + key.strip().replace(" ", "_")


def import_row(lead: Lead, names_by_id: Mapping[str, str] | None = None) -> dict[str, str]:
    row: dict[str, str] = {"email": lead.email}
    for name, value in (("first_name", lead.first_name), ("last_name", lead.last_name),
                        ("job_title", lead.job_title), ("company_name", lead.company)):
        if value:
            row[name] = value
    if lead.phone:
        row["work_phone"] = lead.phone
    if lead.address is not None:
        for source, target in ADDRESS_KEYS.items():
            value = getattr(lead.address, source)
            if value:
                row[target] = str(value)
    for key, value in lead.custom_fields.items():
        row[field_name(key, names_by_id or {})] = value
    return row


def group_key(list_ids: Iterable[str]) -> str:
    """Leads going to the same lists share an import (list_ids apply to every row)."""
    return ",".join(sorted(set(list_ids)))


@dataclass
class Batch:
    list_ids: list[str]
    lead_ids: list[str] = field(default_factory=list)
    rows: list[str] = field(default_factory=list)  # encoded rows, in lead_ids order
    size: int = 0  # bytes of the encoded request body

    def body(self) -> str:
        return ('{"import_data":[' + ",".join(self.rows) + '],"list_ids":'
                + encode(self.list_ids) + "}")


def pack(list_ids: list[str], items: Iterable[tuple[str, str]], *, max_contacts: int,
         max_bytes: int) -> list[Batch]:
    """Cut (lead_id, encoded row) pairs into batches of <= max_contacts rows, < max_bytes."""
    base = ENVELOPE_BYTES + len(encode(list_ids))
    batches: list[Batch] = []
    current = Batch(list_ids, size=base)
    for lead_id, row in items:
        extra = len(row) + (1 if current.rows else 0)
        if current.rows and (len(current.rows) >= max_contacts
                             or current.size + extra >= max_bytes):
            batches.append(current)
            current = Batch(list_ids, size=base)
            extra = len(row)
        current.lead_ids.append(lead_id)
        current.rows.append(row)
        current.size += extra
    if current.rows:
        batches.append(current)
    return batches
