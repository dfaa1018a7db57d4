"""The intake's routes (Starlette): leads in over HTTP, onto the same Redis queue.

POST /v1/leads          JSON lead or batch; API key (Bearer) or a signed webhook
POST /v1/forms/{source} HTML form post; a `form` key in the `_key` field; honeypot; redirect
POST /v1/google-ads     Google Ads lead form webhook, authenticated by its google_key
GET  /v1/leads/{id}     the lead's state from the ledger, no personal data
GET  /healthz, /readyz  liveness (the process answers) and readiness (Redis answers)
Any Redis failure answers 503 with Retry-After; the push is one Lua call, so nothing of that
request was queued (or, if Redis ran it and the reply was lost, all of it: a retry is safe).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from worker.base.errors import InvalidLeadError
from worker.base.redaction import scrub
from worker.base.scope import Scope
from worker.base.settings import Settings
from worker.intake.body import (
    FORM_TYPE,
    JSON_TYPE,
    RequestProblem,
    json_items,
    read_body,
    require_type,
)
from worker.intake.core import Intake, intake_of, problem
from worker.intake.redis_client import async_redis
from worker.intake.sources import HONEYPOT_FIELD, form_to_lead, google_to_lead
from worker.ledger.ledger import Ledger

log = logging.getLogger("leadsync.intake")
RETRY_AFTER_S = 5
SHOWN_FIELDS = ("state", "first_seen", "updated_at", "attempts", "reason_code", "last_status",
                "last_reason", "retry_at", "park_reason", "resume_at", "contact_id", "action",
                "delivered_at")
Handler = Callable[[Request], Awaitable[Response]]


def guarded(handler: Handler) -> Handler:
    """Turn a refused request into its answer and a Redis failure into 503 + Retry-After."""
    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except RequestProblem as exc:
            return problem(exc.status_code, exc.reason)
        except (RedisError, OSError) as exc:
            log.warning("intake: Redis unavailable (%s); answered 503", scrub(type(exc).__name__))
            return problem(503, "Redis unavailable; nothing was queued, retry later",
                           {"Retry-After": str(RETRY_AFTER_S)})
    return run


@guarded
async def post_leads(request: Request) -> Response:
    intake = intake_of(request)
    require_type(request, JSON_TYPE)
    raw = await read_body(request, intake.settings.intake_max_body_bytes)
    credential = intake.json_credential(request, raw)
    if isinstance(credential, Response):
        return credential
    items, is_batch = json_items(raw)
    return await intake.accept(items, is_batch, credential,
                               request.headers.get("idempotency-key"))


@guarded
async def post_form(request: Request) -> Response:
    intake = intake_of(request)
    require_type(request, FORM_TYPE)
    raw = await read_body(request, intake.settings.intake_max_body_bytes)
    try:
        fields = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        raise RequestProblem(400, "form body is not UTF-8") from None
    credential = intake.accepter.api_key(fields.get("_key", ""), "form")
    thanks = _redirect_target(intake.settings, fields.get("_next", ""))
    if fields.get(HONEYPOT_FIELD, "").strip():
        refused = await intake.admit(credential)
        if refused is not None:
            return refused
        log.info("intake: form post dropped by the honeypot (%s)", request.path_params["source"])
        return _form_done(thanks, {"lead_ids": []})
    lead = form_to_lead(fields, request.path_params["source"])
    answer = await intake.accept([lead], False, credential, None)
    if answer.status_code != 202:
        return answer
    return _form_done(thanks, json.loads(bytes(answer.body)))


def _redirect_target(settings: Settings, wanted: str) -> str | None:
    """`_next` only to an allowed origin (LEADSYNC_INTAKE_FORM_REDIRECT_ORIGINS): no open
    redirect through our host."""
    if not wanted:
        return None
    parts = urlsplit(wanted)
    origin = f"{parts.scheme}://{parts.netloc}"
    allowed = {o.rstrip("/") for o in settings.intake_form_redirect_origins}
    if parts.scheme not in ("http", "https") or origin not in allowed:
        raise RequestProblem(400, "_next is not on an allowed origin")
    return wanted


def _form_done(thanks: str | None, body: dict[str, Any]) -> Response:
    if thanks:
        return RedirectResponse(thanks, status_code=303)
    return JSONResponse(body, status_code=202)


@guarded
async def post_google_ads(request: Request) -> Response:
    intake = intake_of(request)
    require_type(request, JSON_TYPE)
    raw = await read_body(request, intake.settings.intake_max_body_bytes)
    configured = intake.settings.intake_google_ads_key
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise RequestProblem(400, "body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise RequestProblem(400, "body is not a JSON object")
    given = payload.get("google_key")
    if configured is None or not isinstance(given, str) or not hmac.compare_digest(
            given.encode(), configured.get_secret_value().encode()):
        return problem(401, "google_key does not match LEADSYNC_INTAKE_GOOGLE_ADS_KEY")
    credential = intake.accepter.source("google-ads")
    if payload.get("is_test") is True:  # the "Send test data" button: checked, never queued
        refused = await intake.admit(credential)
        return refused or JSONResponse({"lead_ids": [], "test": True}, status_code=200)
    try:
        lead = google_to_lead(payload)
    except InvalidLeadError as exc:  # answered per item, like any other invalid lead
        return JSONResponse({"lead_ids": [], "rejected": [
            {"index": 0, "reason": str(exc), "field": exc.field}]},
            status_code=422)
    return await intake.accept([lead], False, credential, None)


@guarded
async def get_lead(request: Request) -> Response:
    intake = intake_of(request)
    credential = intake.json_credential(request, None)
    if isinstance(credential, Response):
        return credential
    refused = await intake.admit(credential)
    if refused is not None:
        return refused
    lead_id = request.path_params["lead_id"]
    state = await run_in_threadpool(intake.ledger_get, lead_id)
    if not state:
        if not await intake.redis.exists(intake.keys.intake_seen(lead_id)):
            return problem(404, "no such lead (or its record expired)")
        state = {"state": "queued"}
    shown = {name: state[name] for name in SHOWN_FIELDS if name in state}
    return JSONResponse({"lead_id": lead_id, **shown})


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    try:
        await intake_of(request).redis.ping()
    except (RedisError, OSError):
        return problem(503, "Redis unreachable", {"Retry-After": str(RETRY_AFTER_S)})
    return JSONResponse({"status": "ready"})


def create_app(scope: Scope, ledger: Ledger) -> Starlette:
    """The ASGI app for an account and its ledger (uvicorn runs `worker.intake.server`, which
    passes the process's Account; tests may use it directly)."""
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = async_redis(scope.settings)
        app.state.intake = Intake(scope, client, ledger)
        try:
            yield
        finally:
            await client.aclose()

    routes = [
        Route("/v1/leads", post_leads, methods=["POST"]),
        Route("/v1/leads/{lead_id:str}", get_lead, methods=["GET"]),
        Route("/v1/forms/{source:str}", post_form, methods=["POST"]),
        Route("/v1/google-ads", post_google_ads, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
