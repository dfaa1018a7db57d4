"""/v3/contact_lists and /v3/contact_custom_fields."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from worker.sandbox.http import Reply, Request, api_error, json_reply
from worker.sandbox.validate import bad, json_body, limit_param

if TYPE_CHECKING:
    from worker.sandbox.state import SandboxState

FIELD_TYPES = {"string", "date", "number", "currency", "boolean", "single_select",
               "multi_select", "datetime", "text"}


class ListsAPI:
    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.store = state.store

    def lists(self, request: Request) -> Reply:
        if request.method == "POST":
            body = json_body(request, "ListInput")
            if not body["name"].strip():
                raise bad("name: must not be blank")
            if self.store.list_named(body["name"]) is not None:
                return api_error(409, "contacts.api.conflict",
                                 "A contact list with this name already exists.")
            record = self.store.add_list(body["name"], body.get("description"),
                                         bool(body.get("favorite", False)),
                                         self.state.clock.now())
            return json_reply(201, record)
        limit = limit_param(request.query.get("limit"), 50, 1, 1000)
        name = request.query.get("name")
        found = [item for item in self.store.lists.values()
                 if name is None or item["name"] == name]
        mode = request.query.get("include_membership_count")
        counts = self.store.membership_counts(mode == "all") if mode in ("active", "all") else None
        page = []
        for item in found[:limit]:
            entry = dict(item)
            if counts is not None:
                entry["membership_count"] = counts[item["list_id"]]
            page.append(entry)
        answer: dict[str, Any] = {"lists": page}
        if request.query.get("include_count") == "true":
            answer["lists_count"] = len(found)
        return json_reply(200, answer)

    def custom_fields(self, request: Request) -> Reply:
        if request.method == "POST":
            body = json_body(request, "CustomFieldRequest")
            label, kind = body.get("label"), body.get("type")
            if not label or not kind:
                raise bad("label and type are required")
            if kind not in FIELD_TYPES:
                raise bad(f"type: must be one of {', '.join(sorted(FIELD_TYPES))}")
            name = label.replace(" ", "_")
            if self.store.custom_field_named(name) is not None:
                return api_error(409, "contacts.api.conflict",
                                 "A custom field with this label already exists.")
            extra: dict[str, Any] = {key: body[key] for key in ("choices", "metadata", "version")
                                     if key in body}
            record = self.store.add_custom_field(label, kind, self.state.clock.now(), extra)
            return json_reply(201, record)
        limit = limit_param(request.query.get("limit"), 50, 1, 100)
        fields = list(self.store.custom_fields.values())[:limit]
        return json_reply(200, {"custom_fields": fields})
