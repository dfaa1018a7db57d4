"""What every intake route shares: credentials, validation and the one atomic push.

The routes (app.py) only read their source's shape; everything that decides what is queued
and what is answered is here, so JSON, forms and Google Ads follow the same rules.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis import Redis as SyncRedis
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from worker.enqueue import prepare
from worker.errors import InvalidLeadError
from worker.intake import admission, signatures
from worker.intake.admission import Admission, Admitter
from worker.intake.push import Pusher
from worker.keys import Keys
from worker.lead import Lead
from worker.settings import Settings

log = logging.getLogger("leadsync.intake")
_REFUSED = {
    admission.UNKNOWN: (401, "unknown API key"),
    admission.REVOKED: (403, "API key revoked"),
    admission.WRONG_SCOPE: (403, "this key may not use this route"),
    admission.REPLAYED: (401, "signature already used"),
}


def problem(status: int, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status, headers=headers)


class Intake:
    """State shared by the routes: settings, the async Redis client, the two Lua scripts."""

    def __init__(self, settings: Settings, redis: aioredis.Redis,
                 ledger_factory: Callable[[Settings, SyncRedis], Any]) -> None:
        self.settings = settings
        self.ledger_factory = ledger_factory
        self._ledger: Any = None
        self.redis = redis
        self.admitter = Admitter(settings, redis)
        self.pusher = Pusher(settings, redis)
        self.keys = Keys(settings.key_prefix, settings.account)
        self.webhook_secrets = signatures.parse_secrets(settings.intake_webhook_secrets)

    def ledger_get(self, lead_id: str) -> dict[str, str]:
        """The ledger's record, read through `Ledger.get()` only (blocking: a thread runs it)."""
        if self._ledger is None:
            from worker.redis_conn import get_redis

            self._ledger = self.ledger_factory(self.settings, get_redis(self.settings))
        record: dict[str, str] = self._ledger.get(lead_id)
        return record

    # --- credentials ---------------------------------------------------------------------
    def refusal(self, admitted: Admission) -> Response | None:
        if admitted.ok:
            return None
        if admitted.code == admission.LIMITED:
            wait = str(max(1, int(admitted.retry_after_s + 0.999)))
            return problem(429, "rate limit for this credential", {"Retry-After": wait})
        status, reason = _REFUSED.get(admitted.code, (401, "not admitted"))
        return problem(status, reason)

    async def admit_json(self, request: Request, raw: bytes | None) -> tuple[str, Response | None]:
        """(credential name, refusal or None) for the JSON routes: Bearer key or signature."""
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            admitted = await self.admitter.api_key(auth[7:].strip(), "leads")
            return "key:" + admitted.name, self.refusal(admitted)
        source = request.headers.get(signatures.SOURCE_HEADER)
        if source is None or raw is None:
            return "", problem(401, "send Authorization: Bearer <key> or a signed webhook")
        secret = self.webhook_secrets.get(source)
        if secret is None:
            return "", problem(401, "unknown webhook source")
        signature = request.headers.get(signatures.SIGNATURE_HEADER, "")
        wrong = signatures.check(secret, request.headers.get(signatures.TIMESTAMP_HEADER, ""),
                                 signature, raw)
        if wrong is not None:
            return "", problem(401, wrong)
        admitted = await self.admitter.signed(source, signature)
        return "src:" + source, self.refusal(admitted)

    # --- queueing ------------------------------------------------------------------------
    async def accept(self, items: list[Any], is_batch: bool, credential: str,
                     idempotency_key: str | None, source: str | None = None) -> Response:
        """Validate every item, queue the valid ones in one Lua call, answer for all."""
        answer_key = self.pusher.answer_key(credential, idempotency_key)
        stored = await self.pusher.lookup(answer_key, self.redis)
        if stored is not None:
            return replay(stored)
        now = _utcnow()
        leads: list[Lead] = []
        rejected: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            if source and isinstance(item, dict) and not item.get("source"):
                item = {**item, "source": source}
            try:
                leads.append(prepare(item, now=now))
            except InvalidLeadError as exc:
                rejected.append({"index": index, "reason": str(exc), "field": exc.field})
        body: dict[str, Any] = {"lead_ids": [lead.lead_id for lead in leads]}
        if not is_batch and leads:
            body["lead_id"] = leads[0].lead_id
        if rejected:
            body["rejected"] = rejected
        status = 422 if rejected else 202
        answer = json.dumps({"status": status, "body": body}, separators=(",", ":"))
        if leads:
            result = await self.pusher.push(leads, answer_key, answer)
            if result.replayed is not None:  # a concurrent twin stored its answer first
                return replay(result.replayed)
        if rejected:
            log.info("intake: %d lead(s) rejected, %d queued (%s)", len(rejected), len(leads),
                     credential, extra={"reasons": sorted({r["reason"] for r in rejected})[:5]})
        return JSONResponse(body, status_code=status)


def replay(stored: str) -> Response:
    answer = json.loads(stored)
    return JSONResponse(answer["body"], status_code=answer["status"],
                        headers={"Idempotent-Replayed": "true"})


def _utcnow() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def intake_of(request: Request) -> Intake:
    intake: Intake = request.app.state.intake
    return intake
