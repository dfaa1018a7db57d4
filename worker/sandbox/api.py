"""The /v3 gate (bearer token, scope, per-client limits) and router.

Order of checks, as a request meets them at Constant Contact: authentication (401), scope (403),
injected 429 bursts, the per-second limit, the daily quota, then the route (404/405), the body
(415/400) and the operation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker.sandbox.http import Reply, Request, api_error, throttled, unauthorized
from worker.sandbox.validate import Invalid

if TYPE_CHECKING:
    from worker.sandbox.state import SandboxState

CONTACTS_PREFIX = "/v3/contacts/"
ACTIVITIES_PREFIX = "/v3/activities/"


def _method_not_allowed(allowed: str) -> Reply:
    reply = api_error(405, "method_not_allowed", f"Allowed methods: {allowed}.")
    reply.headers.append(("Allow", allowed))
    return reply


class API:
    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def handle(self, request: Request) -> Reply:
        state = self.state
        state.stats.api_requests += 1
        now = state.clock.now()
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else ""
        record = state.tokens.check_access(token, now) if token else None
        if record is None:
            state.stats.unauthorized_401 += 1
            return unauthorized()
        if "contact_data" not in record.scopes:
            return api_error(403, "forbidden", "The access token lacks the contact_data scope "
                             "this operation requires.")
        if state.faults.throttle_burst > 0:
            state.faults.throttle_burst -= 1
            state.stats.throttled_429["throttled"] += 1
            return throttled("throttled")
        if not state.limiter.admit(record.client_id, now):
            state.stats.throttled_429["throttled"] += 1
            return throttled("throttled")
        if not state.quota.admit(record.client_id, now):
            state.stats.throttled_429["quota_exceeded"] += 1
            return throttled("quota_exceeded")
        state.activities.tick()
        try:
            return self._route(request)
        except Invalid as exc:
            return exc.reply

    def _route(self, request: Request) -> Reply:
        path, method = request.path.rstrip("/"), request.method
        contacts = self.state.contacts_api
        if path == "/v3/contacts/sign_up_form":
            if method != "POST":
                return _method_not_allowed("POST")
            return contacts.sign_up_form(request)
        if path == "/v3/contacts":
            if method == "GET":
                return contacts.search(request)
            if method == "POST":
                return contacts.create(request)
            return _method_not_allowed("GET, POST")
        if path.startswith(CONTACTS_PREFIX) and "/" not in path[len(CONTACTS_PREFIX):]:
            if method not in ("GET", "PUT", "DELETE"):
                return _method_not_allowed("GET, PUT, DELETE")
            return contacts.one(request, path[len(CONTACTS_PREFIX):])
        if path == "/v3/contact_lists":
            if method not in ("GET", "POST"):
                return _method_not_allowed("GET, POST")
            return self.state.lists_api.lists(request)
        if path == "/v3/contact_custom_fields":
            if method not in ("GET", "POST"):
                return _method_not_allowed("GET, POST")
            return self.state.lists_api.custom_fields(request)
        if path == "/v3/activities/contacts_json_import":
            if method != "POST":
                return _method_not_allowed("POST")
            return self.state.activities.create(request)
        if path.startswith(ACTIVITIES_PREFIX) and "/" not in path[len(ACTIVITIES_PREFIX):]:
            if method != "GET":
                return _method_not_allowed("GET")
            return self.state.activities.get(path[len(ACTIVITIES_PREFIX):])
        return api_error(404, "not_found", "The requested resource was not found.")
