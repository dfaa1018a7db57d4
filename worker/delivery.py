"""Deliver one lead to Constant Contact: the plain logic `leadsync.sync_lead` calls.

`Delivery.run(lead)` never raises for anything a lead or the API can do; it returns a `Result`
saying where the lead went (delivered, retrying with a countdown, parked, dead-lettered, or
skipped as already settled) after writing that state to the ledger. The task only turns a
countdown into `self.retry`. Every attempt's outcome is classified by worker.outcome.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from worker.auth.access import AccessToken, current_access_token, request_refresh
from worker.backoff import backoff_s, cap_countdown
from worker.contact_body import create_body, sign_up_form_body, update_body
from worker.contacts import ContactsClient
from worker.custom_fields import CustomFieldResolver
from worker.deadletter import DeadLetter, DeadLetters
from worker.email_lock import email_lock
from worker.errors import (
    ConflictError,
    InvalidLeadError,
    LeadsyncError,
    QuotaExhaustedError,
    UnauthorizedError,
)
from worker.idempotency import DELIVERED, IN_FLIGHT, RETRYING, SETTLED, Ledger
from worker.lead import Lead
from worker.outcome import Action, Decision, classify
from worker.parking import QUOTA, REAUTH, TOKEN_KEY, ParkingLot
from worker.ratelimit import FleetLimiter, next_utc_midnight
from worker.settings import Settings

log = logging.getLogger("leadsync.delivery")

LIMITER_WAIT_S = 10.0  # longer waits hand the worker slot back (retry, no budget spent)
REFRESH_WAIT_S = 3.0  # how long one try waits for a refreshed token after a 401
WAIT_COUNTDOWN_S = 2.0  # when a wait reason gives no better figure
CALLS_PER_LEAD = 4  # lookup, write, and lookup + write again after a 409


@dataclass(frozen=True)
class Result:
    status: str  # delivered | retrying | parked | dead_lettered | duplicate
    attempt: int
    countdown_s: float | None = None  # set when status == retrying
    spends_budget: bool = False
    detail: dict[str, Any] = field(default_factory=dict)


class Delivery:
    """One per worker process: holds the HTTP session and the fleet limiter."""

    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        *,
        client: ContactsClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.clock = clock
        self.limiter = FleetLimiter(settings, redis)
        self.client = client or ContactsClient(settings, before_request=self._gate)
        self.ledger = Ledger(settings, redis)
        self.parking = ParkingLot(settings, redis)
        self.dead_letters = DeadLetters(settings, redis)
        self.fields = CustomFieldResolver(settings, redis)

    def _gate(self, reserve: bool) -> None:
        self.limiter.acquire(reserve=reserve, max_wait_s=LIMITER_WAIT_S)

    # --- the one entry point ---------------------------------------------------------------
    def run(self, lead: Lead, *, task_id: str | None = None) -> Result:
        started = time.monotonic()
        state = self.ledger.get(lead.lead_id)
        attempt = int(state.get("attempts", 0) or 0) + 1
        if state.get("state") in SETTLED:
            return self._log(lead, Result("duplicate", attempt - 1,
                                          detail={"was": state["state"]}), started)
        try:
            self.ledger.set_state(lead.lead_id, IN_FLIGHT, task_id=task_id)
            result = self._attempt(lead, attempt)
        except Exception as exc:  # every failure is classified, none escapes to Celery
            result = self._after_failure(lead, attempt, classify(exc), exc)
        return self._log(lead, result, started)

    def dead_letter_invalid(self, exc: InvalidLeadError, raw: Any, *,
                            lead_id: str) -> Result:
        """A message whose arguments are not a lead: kept with the reason, never retried."""
        started = time.monotonic()
        decision = classify(exc)
        result = self._dead_letter(lead_id, raw, decision, attempt=1, replayable=False)
        return self._log_id(lead_id, result, started)

    # --- one try ---------------------------------------------------------------------------
    def _attempt(self, lead: Lead, attempt: int) -> Result:
        list_ids = lead.list_ids or list(self.settings.list_ids)
        if not list_ids:
            raise InvalidLeadError("no contact list: give list_ids on the lead or set "
                                   "LEADSYNC_LIST_IDS", field="list_ids")
        lock_ttl_s = CALLS_PER_LEAD * (self.settings.http_timeout_s + LIMITER_WAIT_S) + 30.0
        with email_lock(self.settings, self.redis, lead.email, ttl_s=lock_ttl_s):
            if self.ledger.get(lead.lead_id).get("state") in SETTLED:
                return Result("duplicate", attempt - 1, detail={"was": "delivered meanwhile"})
            detail = self._send_with_fresh_token(lead, list_ids)
        self._record_delivered(lead, attempt, detail)
        return Result(DELIVERED, attempt, detail=detail)

    def _send_with_fresh_token(self, lead: Lead, list_ids: list[str]) -> dict[str, Any]:
        """Send; on a 401 ask for one refresh and try once more with the new token."""
        token = current_access_token(self.settings, self.redis)
        try:
            return self._send(lead, list_ids, token)
        except UnauthorizedError:
            fresh = self._await_new_token(token)
            if fresh is None:
                raise
            return self._send(lead, list_ids, fresh)

    def _await_new_token(self, refused: AccessToken) -> AccessToken | None:
        request_refresh(self.settings, self.redis, refused.generation)
        deadline = time.monotonic() + REFRESH_WAIT_S
        while time.monotonic() < deadline:
            token = current_access_token(self.settings, self.redis)
            if token.generation > refused.generation:
                return token
            time.sleep(0.1)
        return None

    def _send(self, lead: Lead, list_ids: list[str], token: AccessToken) -> dict[str, Any]:
        fields = self.fields.resolve(lead.custom_fields,
                                     lambda: self.client.custom_fields(token.value))
        if lead.consent:
            status, answer = self.client.sign_up_form(
                token.value, sign_up_form_body(lead, list_ids, fields))
            return {"path": "sign_up_form", "contact_id": answer.get("contact_id"),
                    "action": answer.get("action") or ("created" if status == 201 else "updated")}
        return self._upsert_without_consent(lead, list_ids, fields, token)

    def _upsert_without_consent(self, lead: Lead, list_ids: list[str], fields: dict[str, str],
                                token: AccessToken) -> dict[str, Any]:
        """GET by email, then PUT (keeping its permission) or POST (implicit permission)."""
        existing = self.client.find_by_email(token.value, lead.email)
        if existing is None:
            try:
                created = self.client.create(token.value, create_body(lead, list_ids, fields))
                return {"path": "contacts", "contact_id": created.get("contact_id"),
                        "action": "created"}
            except ConflictError:
                # Created meanwhile (or a deleted contact we could not see): update it instead.
                existing = self.client.find_by_email(token.value, lead.email)
                if existing is None:
                    raise
        contact_id = str(existing["contact_id"])
        self.client.replace(token.value, contact_id,
                            update_body(lead, existing, list_ids, fields))
        return {"path": "contacts", "contact_id": contact_id, "action": "updated"}

    # --- bookkeeping -----------------------------------------------------------------------
    def _record_delivered(self, lead: Lead, attempt: int, detail: dict[str, Any]) -> None:
        self.ledger.set_state(lead.lead_id, DELIVERED, contact_id=detail.get("contact_id"),
                              action=detail.get("action"), path=detail.get("path"),
                              delivered_at=self.clock())
        self.ledger.bump("delivered", str(detail.get("action") or "delivered_other"))

    def _after_failure(self, lead: Lead, attempt: int, decision: Decision,
                       exc: BaseException) -> Result:
        now = self.clock()
        if decision.action is Action.DEAD_LETTER:
            return self._dead_letter(lead.lead_id, lead.to_json_dict(), decision, attempt)
        if decision.action is Action.PARK_QUOTA:
            resume_at = (exc.resume_at.timestamp() if isinstance(exc, QuotaExhaustedError)
                         else next_utc_midnight(now).timestamp())
            self.parking.park(lead, QUOTA, resume_at, attempts=attempt - 1, now=now)
            return Result("parked", attempt - 1, detail={"reason": QUOTA, "resume_at": resume_at})
        if decision.action is Action.PARK_REAUTH:
            reason = TOKEN_KEY if decision.reason_code == TOKEN_KEY else REAUTH
            self.parking.park(lead, reason, now, attempts=attempt - 1, now=now)
            return Result("parked", attempt - 1, detail={"reason": reason})
        if decision.spends_budget:
            failures = self.ledger.count_attempt(lead.lead_id)
            self.ledger.note_error(lead.lead_id, decision.reason_code, decision.reason, now=now)
            if failures > self.settings.max_retries:
                exhausted = Decision(Action.DEAD_LETTER, True,
                                     f"retries exhausted after {failures} tries: "
                                     f"{decision.reason}", "retries_exhausted",
                                     decision.status_code)
                return self._dead_letter(lead.lead_id, lead.to_json_dict(), exhausted, failures)
            wait = max(decision.retry_after_s or 0.0,
                       backoff_s(failures, self.settings.backoff_base_s,
                                 self.settings.backoff_max_s))
        else:
            failures = attempt - 1
            wait = decision.retry_after_s if decision.retry_after_s is not None else (
                WAIT_COUNTDOWN_S)
            if decision.action is Action.REFRESH:
                wait = WAIT_COUNTDOWN_S  # the refresh is on its way; let this slot go meanwhile
        countdown = cap_countdown(wait, self.settings.visibility_timeout_s)
        self.ledger.set_state(lead.lead_id, RETRYING, last_reason=decision.reason_code,
                              last_status=decision.status_code, retry_at=now + countdown)
        return Result("retrying", failures, countdown_s=countdown,
                      spends_budget=decision.spends_budget,
                      detail={"reason": decision.reason_code, "http_status": decision.status_code})

    def _dead_letter(self, lead_id: str, raw: Any, decision: Decision, attempt: int, *,
                     replayable: bool = True) -> Result:
        now = self.clock()
        first_seen = self.ledger.get(lead_id).get("first_seen")
        self.dead_letters.add(DeadLetter(
            lead_id=lead_id, reason=decision.reason, reason_code=decision.reason_code,
            attempts=attempt, last_status=decision.status_code,
            first_seen=float(first_seen) if first_seen else now, dead_at=now, lead=raw,
            replayable=replayable))
        self.ledger.bump("dead_lettered")
        self.ledger.note_error(lead_id, decision.reason_code, decision.reason, now=now)
        return Result("dead_lettered", attempt, detail={"reason": decision.reason_code,
                                                        "http_status": decision.status_code,
                                                        "detail": decision.reason})

    # --- the one log line per outcome ------------------------------------------------------
    def _log(self, lead: Lead, result: Result, started: float) -> Result:
        extra = {"truncated": ",".join(lead.truncated)} if lead.truncated else {}
        return self._log_id(lead.lead_id, result, started, **extra)

    def _log_id(self, lead_id: str, result: Result, started: float, **extra: Any) -> Result:
        latency_ms = round((time.monotonic() - started) * 1000, 1)
        fields: dict[str, Any] = {"lead_id": lead_id, "status": result.status,
                                  "attempt": result.attempt, "latency_ms": latency_ms, **extra}
        fields.update({k: v for k, v in result.detail.items() if v is not None})
        if result.countdown_s is not None:
            fields["countdown_s"] = round(result.countdown_s, 3)
        level = logging.WARNING if result.status == "dead_lettered" else logging.INFO
        summary = " ".join(f"{k}={v}" for k, v in fields.items() if k != "lead_id")
        log.log(level, "lead %s %s", lead_id, summary, extra=fields)
        return result


def safe_run(delivery: Delivery, lead: Lead, task_id: str | None) -> Result:
    """`run`, with Redis trouble (the one thing it cannot record) turned into a retry."""
    try:
        return delivery.run(lead, task_id=task_id)
    except (LeadsyncError, RedisError) as exc:  # Redis down while writing the ledger
        decision = classify(exc)
        log.warning("lead %s could not be recorded (%s); retrying", lead.lead_id,
                    decision.reason_code)
        return Result("retrying", 0, countdown_s=WAIT_COUNTDOWN_S)
