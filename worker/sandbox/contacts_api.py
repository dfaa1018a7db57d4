"""/v3/contacts, /v3/contacts/sign_up_form and /v3/contacts/{id}: the lead-sync endpoints."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

from worker.sandbox.clock import iso
from worker.sandbox.http import Reply, Request, api_error, json_reply
from worker.sandbox.store import SCALARS, SUBRESOURCES, email_object, resource
from worker.sandbox.validate import (
    UUID_RE,
    Invalid,
    bad,
    check_birthday,
    check_email,
    check_source,
    json_body,
    limit_param,
)

if TYPE_CHECKING:
    from worker.sandbox.state import SandboxState

INCLUDES = set(SUBRESOURCES) | {"sms_channel"}
STATUSES = {"all", "active", "deleted", "not_set", "pending_confirmation", "temp_hold",
            "unsubscribed", "explicit", "implicit"}


def _not_found(contact_id: str) -> Invalid:
    if not UUID_RE.match(contact_id):
        return Invalid(api_error(404, "contacts.api.not_found",
                                 "contact_id is in an invalid format."))
    return Invalid(api_error(404, "contacts.api.not_found", "Contact not found."))


def _include(raw: str | None) -> set[str]:
    names = {part.strip() for part in (raw or "").split(",") if part.strip()}
    unknown = names - INCLUDES
    if unknown:
        raise bad(f"include: unknown value(s) {', '.join(sorted(unknown))}")
    return names


class ContactsAPI:
    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.store = state.store
        self.writing: dict[str, float] = {}  # contact_id -> end of its (simulated) write

    # --- helpers --------------------------------------------------------------------------
    def _lists_exist(self, list_ids: list[str]) -> None:
        for list_id in list_ids:
            if list_id not in self.store.lists:
                raise Invalid(api_error(404, "contacts.api.not_found",
                                        f"Contact list {list_id[:40]} not found."))

    def _fields_exist(self, fields: list[dict[str, Any]]) -> None:
        for field in fields:
            if field["custom_field_id"] not in self.store.custom_fields:
                raise Invalid(api_error(404, "contacts.api.not_found",
                                        f"Custom field {field['custom_field_id'][:40]} "
                                        "not found."))

    @staticmethod
    def _merge(existing: list[Any], new: list[Any], key: str | None) -> list[Any]:
        """Append without duplicates; items with the same key are replaced in place."""
        merged = list(existing)
        for item in new:
            if key is None:
                if item not in merged:
                    merged.append(item)
                continue
            index = next((i for i, old in enumerate(merged) if old.get(key) == item.get(key)),
                         None)
            if index is None:
                merged.append(item)
            else:
                merged[index] = {**merged[index], **item}
        return merged

    # --- sign_up_form ----------------------------------------------------------------------
    def sign_up_form(self, request: Request) -> Reply:
        body = json_body(request, "ContactCreateOrUpdateInput")
        if "email_address" not in body:
            raise bad("email_address: is required")
        address = check_email(body["email_address"])
        check_birthday(body)
        self._lists_exist(body["list_memberships"])
        self._fields_exist(body.get("custom_fields", []))
        now = self.state.clock.now()
        contact = self.store.find_email(address)
        window = self.state.faults.conflict_window_ms / 1000
        if contact is not None and window > 0:
            if self.writing.get(contact["contact_id"], 0.0) > now:
                return api_error(409, "contacts.api.conflict", "Another request is modifying "
                                 "this contact; retry.")
            self.writing[contact["contact_id"]] = now + window
        created = contact is None
        stamp = iso(now)
        if contact is None:
            contact = self.store.new_contact(now, "Contact")
            if self.state.config.confirmed_opt_in:
                contact["email_address"] = email_object(address, "pending_confirmation",
                                                        "Contact", now, "pending")
            else:
                contact["email_address"] = email_object(address, "explicit", "Contact", now)
            self.store.insert(contact)
            if window > 0:
                self.writing[contact["contact_id"]] = now + window
        else:
            email = contact["email_address"]
            if email.get("permission_to_send") != "explicit":
                email.update(permission_to_send="explicit", opt_in_date=stamp,
                             opt_in_source="Contact", confirm_status="off")
                for name in ("opt_out_source", "opt_out_date", "opt_out_reason"):
                    email.pop(name, None)
            email["updated_at"] = stamp
            contact["deleted_at"] = None  # an update revives a deleted contact
            contact["update_source"] = "Contact"
        self._apply_partial(contact, body, now)
        contact["updated_at"] = stamp
        stats = self.state.stats
        stats.sign_up_form_calls[contact["contact_id"]] += 1
        if created:
            stats.contacts_created += 1
        else:
            stats.contacts_updated += 1
        return json_reply(201 if created else 200, {
            "contact_id": contact["contact_id"], "action": "created" if created else "updated"})

    def _apply_partial(self, contact: dict[str, Any], body: dict[str, Any], now: float) -> None:
        for name in SCALARS:
            if name in body:
                contact[name] = body[name]
        contact["list_memberships"] = self._merge(contact["list_memberships"],
                                                  body["list_memberships"], None)
        contact["custom_fields"] = self._merge(contact["custom_fields"],
                                               body.get("custom_fields", []), "custom_field_id")
        if body.get("phone_number"):
            phone = {"phone_number": body["phone_number"], "kind": "other"}
            phones = self._merge(contact["phone_numbers"], [phone], "kind")
            contact["phone_numbers"] = phones[:3]
        if body.get("street_address"):
            contact["street_addresses"] = self._merge(
                contact["street_addresses"], [body["street_address"]], "kind")[:3]
        if body.get("sms_channel"):
            contact["sms_channel"] = body["sms_channel"]

    # --- POST /contacts ---------------------------------------------------------------------
    def create(self, request: Request) -> Reply:
        body = json_body(request, "ContactPostRequest")
        source = check_source(body, "create_source")
        if not any(body.get(name) for name in ("first_name", "last_name", "email_address",
                                                "sms_channel")):
            raise bad("one of email_address, first_name, last_name or sms_channel is required")
        check_birthday(body)
        self._lists_exist(body.get("list_memberships", []))
        self._fields_exist(body.get("custom_fields", []))
        now = self.state.clock.now()
        email = body.get("email_address")
        if email is not None:
            address = check_email(email["address"])
            existing = self.store.find_email(address)
            if existing is not None:  # deleted contacts too: "never really deleted"
                return api_error(409, "contacts.api.conflict",
                                 f"Email already exists for contact {existing['contact_id']}")
        contact = self.store.new_contact(now, source)
        self._replace(contact, body, now, keep_missing_scalars=False)
        self.store.insert(contact)
        self.state.stats.contacts_created += 1
        return json_reply(201, resource(contact, None))

    def _replace(self, contact: dict[str, Any], body: dict[str, Any], now: float,
                 keep_missing_scalars: bool) -> None:
        for name in SCALARS:
            if name in body or not keep_missing_scalars:
                contact[name] = body.get(name)
        for name in SUBRESOURCES:
            if name in body:
                contact[name] = list(body[name])
        if "sms_channel" in body:
            contact["sms_channel"] = body["sms_channel"]
        email = body.get("email_address")
        if email is not None:
            address = email["address"].strip()
            old = contact.get("email_address")
            if old is None or old["address"].lower() != address.lower():
                self.store.change_email(contact, address)
                contact["email_address"] = email_object(
                    address, email.get("permission_to_send", "implicit"),
                    contact.get("update_source") or contact["create_source"], now)
            elif "permission_to_send" in email:
                old.update(permission_to_send=email["permission_to_send"], updated_at=iso(now))

    # --- GET /contacts ----------------------------------------------------------------------
    def search(self, request: Request) -> Reply:
        params = dict(request.query)
        if "cursor" in params:
            try:
                params = json.loads(base64.urlsafe_b64decode(params["cursor"].encode()))
            except ValueError:
                raise bad("cursor: is not valid") from None
        limit = limit_param(params.get("limit"), 50, 1, 500)
        include = _include(params.get("include"))
        status = params.get("status", "active")
        if status not in STATUSES:
            raise bad(f"status: must be one of {', '.join(sorted(STATUSES))}")
        email = params.get("email")
        if email is not None:
            found = self.store.find_email(email)
            candidates = [found] if found is not None else []
        else:
            candidates = list(self.store.contacts.values())
        list_id = params.get("lists")
        matched = [c for c in candidates if _status_matches(c, status)
                   and (list_id is None or list_id in c.get("list_memberships", []))]
        offset = int(params.get("offset", 0))
        page = matched[offset:offset + limit]
        answer: dict[str, Any] = {"contacts": [resource(c, include) for c in page]}
        if params.get("include_count") == "true":
            answer["contacts_count"] = len(matched)
        if offset + limit < len(matched):
            nxt = {k: v for k, v in params.items() if k != "cursor"}
            nxt.update(offset=str(offset + limit), limit=str(limit))
            cursor = base64.urlsafe_b64encode(json.dumps(nxt).encode()).decode()
            answer["_links"] = {"next": {"href": f"/v3/contacts?cursor={cursor}"}}
        return json_reply(200, answer)

    # --- /contacts/{id} ---------------------------------------------------------------------
    def one(self, request: Request, contact_id: str) -> Reply:
        contact = self.store.contacts.get(contact_id)
        if contact is None:
            raise _not_found(contact_id)
        if request.method == "GET":
            return json_reply(200, resource(contact, _include(request.query.get("include"))))
        if request.method == "DELETE":
            if contact.get("deleted_at"):
                raise _not_found(contact_id)
            contact["deleted_at"] = iso(self.state.clock.now())[:10]
            return Reply(204)
        return self._put(request, contact)

    def _put(self, request: Request, contact: dict[str, Any]) -> Reply:
        body = json_body(request, "ContactPutRequest")
        source = check_source(body, "update_source")
        check_birthday(body)
        self._lists_exist(body.get("list_memberships", []))
        self._fields_exist(body.get("custom_fields", []))
        email = body.get("email_address")
        if email is not None:
            check_email(email["address"])
            other = self.store.find_email(email["address"])
            if other is not None and other["contact_id"] != contact["contact_id"]:
                return api_error(409, "contacts.api.conflict",
                                 f"Email already exists for contact {other['contact_id']}")
        now = self.state.clock.now()
        contact["update_source"] = source
        self._replace(contact, body, now, keep_missing_scalars=False)
        contact["deleted_at"] = None  # PUT revives a deleted contact
        contact["updated_at"] = iso(now)
        self.state.stats.contacts_updated += 1
        return json_reply(200, resource(contact, None))


def _status_matches(contact: dict[str, Any], status: str) -> bool:
    deleted = bool(contact.get("deleted_at"))
    if status == "all":
        return True
    if status == "deleted":
        return deleted
    if deleted:
        return False
    if status == "active":
        return True
    return bool(contact.get("email_address", {}).get("permission_to_send") == status)
