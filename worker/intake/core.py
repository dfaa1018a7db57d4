"""What every intake route shares: credentials, validation and the one atomic Redis call.

The routes (app.py) only read their source's shape; everything that decides what is queued
and what is answered is here, so JSON, forms and Google Ads follow the same rules.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from worker.base.errors import InvalidLeadError
from worker.base.scope import Scope
from worker.intake import admission, signatures
from worker.intake.admission import Accepter, Credential, Outcome
from worker.leads.enqueue import prepare
from worker.leads.lead import Lead
from worker.ledger.ledger import Ledger

log = logging.getLogger("leadsync.intake")
_REFUSED = {
    admission.UNKNOWN: (401, "unknown API key"),
    admission.REVOKED: (403, "API key revoked"),
    admission.WRONG_SCOPE: (403, "this key may not use this route"),
    admission.REPLAYED: (401, "signature already used"),
}


def problem(status: int, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status, headers=headers)


def refusal(outcome: Outcome) -> Response | None:
    """None when admitted, else the 401/403/429 answer."""
    if outcome.ok:
        return None
    if outcome.code == admission.LIMITED:
        wait = str(max(1, int(outcome.retry_after_s + 0.999)))
        return problem(429, "rate limit for this credential", {"Retry-After": wait})
    status, reason = _REFUSED.get(outcome.code, (401, "not admitted"))
    return problem(status, reason)


def replay(stored: str) -> Response:
    answer = json.loads(stored)
    return JSONResponse(answer["body"], status_code=answer["status"],
                        headers={"Idempotent-Replayed": "true"})


class Intake:
    """State shared by the routes: settings, the async Redis client, the Lua script, and the
    account's ledger (its own, synchronous client) for `GET /v1/leads/{lead_id}`."""

    def __init__(self, scope: Scope, redis: aioredis.Redis, ledger: Ledger) -> None:
        self.settings = scope.settings
        self.ledger = ledger
        self.redis = redis
        self.accepter = Accepter(scope, redis)
        self.keys = scope.keys
        self.webhook_secrets = signatures.parse_secrets(self.settings.intake_webhook_secrets)

    def ledger_get(self, lead_id: str) -> dict[str, str]:
        """The ledger's record, read through `Ledger.get()` only (blocking: a thread runs it)."""
        return self.ledger.get(lead_id)

    def json_credential(self, request: Request, raw: bytes | None
                        ) -> Credential | Response:
        """A Bearer key, or a signed webhook whose HMAC and timestamp are good."""
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            return self.accepter.api_key(auth[7:].strip(), "leads")
        source = request.headers.get(signatures.SOURCE_HEADER)
        if source is None or raw is None:
            return problem(401, "send Authorization: Bearer <key> or a signed webhook")
        secret = self.webhook_secrets.get(source)
        if secret is None:
            return problem(401, "unknown webhook source")
        signature = request.headers.get(signatures.SIGNATURE_HEADER, "")
        wrong = signatures.check(secret, request.headers.get(signatures.TIMESTAMP_HEADER, ""),
                                 signature, raw)
        if wrong is not None:
            return problem(401, wrong)
        return self.accepter.signed(source, signature)

    async def admit(self, credential: Credential) -> Response | None:
        """Admission only (GET, the honeypot): None when admitted."""
        return refusal(await self.accepter.run(credential))

    async def accept(self, items: list[Any], is_batch: bool, credential: Credential,
                     idempotency_key: str | None) -> Response:
        """Validate every item, then admit and queue the valid ones in one Lua call."""
        now = datetime.now(UTC)
        leads: list[Lead] = []
        rejected: list[dict[str, Any]] = []
        for index, item in enumerate(items):
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
        outcome = await self.accepter.run(credential, leads, idempotency_key, answer)
        refused = refusal(outcome)
        if refused is not None:
            return refused
        if outcome.replayed is not None:
            return replay(outcome.replayed)
        if rejected:
            log.info("intake: %d lead(s) rejected, %d queued (%s)", len(rejected), len(leads),
                     outcome.name, extra={"reasons": sorted({r["reason"] for r in rejected})[:5]})
        return JSONResponse(body, status_code=status)


def intake_of(request: Request) -> Intake:
    intake: Intake = request.app.state.intake
    return intake
