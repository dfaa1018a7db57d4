"""/v3/activities/contacts_json_import and /v3/activities/{id}: asynchronous bulk upserts.

An activity stays `initialized` for one step, `processing` for another, then ends: `completed`
(every row processed, the contacts written then), or, when a fault asks for it (`failed_imports`,
`timed_out_imports`, `cancelled_imports`), `failed` (nothing written) or `timed_out` /
`cancelled` (the first half of the rows processed, the rest not). Steps are measured on the
sandbox clock, so moving the clock ends imports at once; a timer in the server loop also ticks
them in real time.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from worker.sandbox.clock import iso
from worker.sandbox.http import Reply, Request, api_error, json_reply
from worker.sandbox.import_cut import rows_within
from worker.sandbox.schema import first_error
from worker.sandbox.store import email_object
from worker.sandbox.validate import EMAIL_RE, Invalid, bad, json_body

if TYPE_CHECKING:
    from worker.sandbox.state import SandboxState

PLAIN = ("first_name", "last_name", "job_title", "company_name", "birthday_month",
         "birthday_day", "anniversary")
ADDRESS = {"street": "street", "city": "city", "state": "state", "zip": "postal_code",
           "country": "country"}
PHONES = {"phone": "other", "home_phone": "home", "work_phone": "work",
          "mobile_phone": "mobile", "other_phone": "other"}
ROWS_PER_TICK = 2_000  # rows an import writes per sandbox tick (one event-loop turn)


class Activities:
    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.items: dict[str, dict[str, Any]] = {}
        self.pending: list[str] = []

    def queued(self) -> int:
        return len(self.pending)

    def create(self, request: Request) -> Reply:
        if request.method != "POST":
            raise Invalid(api_error(405, "method_not_allowed", "POST only."))
        body = json_body(request, None)
        problem = _top_level_error(body)
        if problem:
            raise bad(problem)
        config = self.state.config
        rows = body["import_data"]
        if len(rows) > config.max_import_contacts:
            raise bad(f"import_data: at most {config.max_import_contacts} contacts per import")
        for list_id in body["list_ids"]:
            if list_id not in self.state.store.lists:
                raise Invalid(api_error(404, "contacts.api.not_found",
                                        f"Contact list {str(list_id)[:40]} not found."))
        if self.queued() >= config.max_queued_activities:
            return json_reply(429, {"error_key": "too_many_requests", "error_message":
                                    "You exceeded 1,000 queued activities for this user "
                                    "account."})
        if len(request.body) > config.max_import_bytes:  # the rest is dropped silently
            rows = rows[:rows_within(request.body, config.max_import_bytes)]
        now = self.state.clock.now()
        activity_id = str(uuid.uuid4())
        self.items[activity_id] = {"activity_id": activity_id, "state": "initialized",
                                   "created_at": now, "updated_at": now, "_rows": rows,
                                   "_lists": list(body["list_ids"]), "activity_errors": [],
                                   "status": {}, "_end": self.state.faults.import_end()}
        self.pending.append(activity_id)
        self.state.stats.imports += 1
        return json_reply(201, self._view(self.items[activity_id], summary=True))

    def get(self, activity_id: str) -> Reply:
        self.state.stats.activity_polls += 1
        self.tick()
        item = self.items.get(activity_id)
        if item is None:
            raise Invalid(api_error(404, "activities.api.not_found", "Activity not found."))
        return json_reply(200, self._view(item, summary=False))

    def _view(self, item: dict[str, Any], summary: bool) -> dict[str, Any]:
        view = {"activity_id": item["activity_id"], "state": item["state"],
                "created_at": iso(item["created_at"]), "updated_at": iso(item["updated_at"]),
                "_links": {"self": {"href": f"/v3/activities/{item['activity_id']}"}}}
        if "started_at" in item:
            view["started_at"] = iso(item["started_at"])
        if "completed_at" in item:
            view["completed_at"] = iso(item["completed_at"])
        if not summary:
            status = dict(item["status"]) or {
                "items_total_count": len(item["_rows"]), "items_completed_count": 0}
            if item["state"] == "processing":
                view["percent_done"] = 50
            else:  # initialized: 0; ended: the share of rows processed
                view["percent_done"] = (100 * status["items_completed_count"]
                                        // max(status["items_total_count"], 1))
            view["activity_errors"] = list(item["activity_errors"])
            view["status"] = status
        return view

    def tick(self) -> None:
        """Move every queued activity along by the sandbox clock."""
        if not self.pending:
            return
        now = self.state.clock.now()
        step = self.state.config.activity_step_s
        still = []
        for activity_id in self.pending:
            item = self.items[activity_id]
            if item["state"] == "initialized" and now >= item["created_at"] + step:
                item.update(state="processing", started_at=item["created_at"] + step,
                            updated_at=now)
            if item["state"] == "processing" and now >= item["created_at"] + 2 * step:
                self._end(item, now)  # a slice of rows per tick: other requests go between
            if item["state"] in ("initialized", "processing"):
                still.append(activity_id)  # still queued (counts toward the 1,000)
        self.pending = still

    def _end(self, item: dict[str, Any], now: float) -> None:
        """Write the next ROWS_PER_TICK rows; the last slice ends the activity. The sandbox runs
        on one event loop: a 20,000-row import written at once blocked every other request for
        1.5-3 s (a consented lead's sign_up_form waited behind it), which Constant Contact,
        processing imports apart from its API, does not do."""
        end, rows = item["_end"], item["_rows"]
        done = {"completed": len(rows), "failed": 0}.get(end, len(rows) // 2)
        start = item.setdefault("_cursor", 0)
        progress = item.setdefault("_progress", {"errors": [], "added": 0, "cannot_add": 0})
        stop = min(done, start + ROWS_PER_TICK)
        for line, row in enumerate(rows[start:stop], start=start + 1):
            problem = _row_error(row, self.state)
            if problem:
                # Constant Contact's strings name the row by line and, when it has one, email.
                email = row.get("email") if isinstance(row, dict) else None
                named = f" ({str(email)[:80]})" if email else ""
                progress["errors"].append(f"Line {line}{named}: {problem}")
                continue
            if self._upsert(row, item["_lists"], now):
                progress["added"] += 1
            else:
                progress["cannot_add"] += 1
        item["_cursor"] = stop
        if stop < done:
            return  # still processing: the next tick writes the next slice
        errors, added, cannot_add = progress["errors"], progress["added"], progress["cannot_add"]
        item.update(state=end, completed_at=now, updated_at=now, activity_errors=errors,
                    status={"items_total_count": len(rows), "items_completed_count": done,
                            "person_count": added + cannot_add, "error_count": len(errors),
                            "correctable_count": 0, "cannot_add_to_list_count": cannot_add})

    def _upsert(self, row: dict[str, Any], list_ids: list[str], now: float) -> bool:
        """Write one row; False when the contact is unsubscribed (not added to lists)."""
        store, stats = self.state.store, self.state.stats
        contact = store.find_email(row["email"])
        if contact is None:
            contact = store.new_contact(now, "Account")
            contact["email_address"] = email_object(row["email"].strip(), "implicit",
                                                    "Account", now)
            store.insert(contact)
            stats.contacts_created += 1
        else:
            stats.contacts_updated += 1
            contact["update_source"] = "Account"
        for name in PLAIN:
            if name in row:
                contact[name] = row[name]
        address = {ADDRESS[k]: v for k, v in row.items() if k in ADDRESS}
        if address:
            contact["street_addresses"] = [{"kind": "home", **address}]
        for key, kind in PHONES.items():
            if key in row:
                contact["phone_numbers"] = [p for p in contact["phone_numbers"]
                                            if p.get("kind") != kind][:2]
                contact["phone_numbers"].append({"phone_number": row[key], "kind": kind})
        for key, value in row.items():
            if key.startswith("cf:"):
                field = store.custom_field_named(key[3:])
                assert field is not None  # checked by _row_error
                contact["custom_fields"] = [f for f in contact["custom_fields"]
                                            if f["custom_field_id"] != field["custom_field_id"]]
                contact["custom_fields"].append({"custom_field_id": field["custom_field_id"],
                                                 "value": str(value)})
        contact["updated_at"] = iso(now)
        if contact["email_address"].get("permission_to_send") == "unsubscribed":
            return False
        for list_id in list_ids:
            if list_id not in contact["list_memberships"]:
                contact["list_memberships"].append(list_id)
        return True


def _top_level_error(body: dict[str, Any]) -> str | None:
    """The import's own fields (rows are checked one by one while processing)."""
    shallow = {k: v for k, v in body.items() if k != "import_data"}
    rows = body.get("import_data")
    if rows is not None:
        shallow["import_data"] = [] if isinstance(rows, list) else rows
    return first_error("ContactsJsonImport", shallow)


def _row_error(row: Any, state: SandboxState) -> str | None:
    if not isinstance(row, dict):
        return "the contact must be an object"
    problem = first_error("JsonImportContact", row)
    if problem:
        return problem
    if not row.get("email"):
        return "email is required (sms_number imports are not emulated)"
    if not EMAIL_RE.match(str(row["email"]).strip()):
        return "email is not a valid email address"
    for key in row:
        if key.startswith("cf:") and state.store.custom_field_named(key[3:]) is None:
            return f"custom field {key[:60]} does not exist"
    return None
