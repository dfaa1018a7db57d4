"""/_sandbox/*: inspection and control over HTTP, so other processes and the CLI can drive a
running sandbox. Each route calls the same method tests call on SandboxServer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from worker.sandbox.http import Reply, Request, api_error, json_reply, parse_json

if TYPE_CHECKING:
    from worker.sandbox.server import SandboxServer

GET_ROUTES = {"stats", "contacts"}
POST_ROUTES = {"faults", "revoke-refresh-tokens", "clock", "rotate-keys", "device/approve",
               "device/deny", "reset"}


def _body(request: Request) -> dict[str, Any]:
    if not request.body.strip():
        return {}
    body = parse_json(request.body)
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


def handle(server: SandboxServer, request: Request) -> Reply:
    name = request.path.removeprefix("/_sandbox/").rstrip("/")
    if name in GET_ROUTES:
        if request.method != "GET":
            return api_error(405, "method_not_allowed", "GET only.")
        if name == "stats":
            return json_reply(200, server.stats())
        return json_reply(200, {"contacts": server.contacts()})
    if name not in POST_ROUTES:
        return api_error(404, "not_found", f"no control route {name[:60]!r}")
    if request.method != "POST":
        return api_error(405, "method_not_allowed", "POST only.")
    try:
        body = _body(request)
        return json_reply(200, _post(server, name, body))
    except ValueError as exc:
        return api_error(400, "sandbox.bad_request", str(exc))


def _post(server: SandboxServer, name: str, body: dict[str, Any]) -> dict[str, Any]:
    if name == "faults":
        return {"faults": server.set_faults(**body)}
    if name == "revoke-refresh-tokens":
        return {"revoked": server.revoke_refresh_tokens()}
    if name == "clock":
        advance = body.get("advance_s", 0)
        if isinstance(advance, bool) or not isinstance(advance, int | float) or advance < 0:
            raise ValueError("advance_s must be a non-negative number of seconds")
        now = server.advance_clock(float(advance))
        return {"now": now, "offset_s": server.state.clock.offset_s}
    if name == "rotate-keys":
        return {"kids": server.rotate_keys()}
    if name in ("device/approve", "device/deny"):
        user_code = body.get("user_code")
        if user_code is not None and not isinstance(user_code, str):
            raise ValueError("user_code must be a string")
        if name == "device/approve":
            return {"approved": server.approve_device(user_code)}
        return {"denied": server.deny_device(user_code)}
    server.reset()
    return {"reset": True}
