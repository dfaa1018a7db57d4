"""Deliver one lead to Constant Contact: the plain logic `leadsync.sync_lead` calls.

`Delivery.run(lead)` never raises for anything a lead or the API can do; it returns a `Result`
saying where the lead went (a `LeadState`: delivered, retrying with a due time in the schedule,
parked, dead-lettered; or a duplicate that found it settled or held elsewhere) after writing
that outcome to Redis. The one thing it cannot record is an outcome while Redis stays away for
`LEADSYNC_OUTCOME_WAIT_S`: then it raises `OutcomeNotRecordedError` and the task hands the
message back unacknowledged. Every attempt's outcome is classified by worker.delivery.outcome.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from worker.auth.access import AccessToken, newer_token, token_checker
from worker.auth.access import request_refresh as ask_refresh
from worker.auth.token_store import TokenStore
from worker.base.errors import (
    ConflictError,
    InvalidLeadError,
    QuotaExhaustedError,
    UnauthorizedError,
)
from worker.base.scope import Scope
from worker.delivery.contact_body import create_body, sign_up_form_body, update_body
from worker.delivery.contacts import ContactsClient
from worker.delivery.custom_fields import CustomFieldResolver
from worker.delivery.email_lock import EmailLock
from worker.delivery.gate import StagingGate
from worker.delivery.lead_steps import Opened, open_lead, settle_delivered
from worker.delivery.outcome import RETRIES_EXHAUSTED, Action, Decision, classify, spend_try
from worker.delivery.ratelimit import FleetLimiter, next_utc_midnight
from worker.delivery.result import Result, log_outcome
from worker.leads.lead import Lead
from worker.leads.wire import encode_message
from worker.ledger.deadletter import DeadLetter, DeadLetters
from worker.ledger.durable import OutcomeNotRecordedError, write_durably
from worker.ledger.lead_state import NOTHING_TO_DO, LeadState
from worker.ledger.ledger import Ledger
from worker.ledger.parking import QUOTA, REAUTH, TOKEN_KEY, ParkingLot

log = logging.getLogger("leadsync.delivery")

LIMITER_WAIT_S = 10.0  # longer waits hand the worker slot back (retry, no budget spent)
REFRESH_WAIT_S = 3.0  # how long one try waits for a refreshed token after a 401
WAIT_COUNTDOWN_S = 2.0  # when a wait reason gives no better figure
CALLS_PER_LEAD = 4  # lookup, write, and lookup + write again after a 409
T = TypeVar("T")


class Delivery:
    """One per worker thread (it holds the HTTP session); its collaborators are the Account's,
    shared by the process (`worker.account.Account.delivery()` builds it)."""

    def __init__(self, scope: Scope, *, tokens: TokenStore, ledger: Ledger,
                 limiter: FleetLimiter, parking: ParkingLot, dead_letters: DeadLetters,
                 fields: CustomFieldResolver, bulk: StagingGate,
                 client: ContactsClient | None = None, clock: Callable[[], float] = time.time,
                 request_refresh: Callable[[int], None] | None = None) -> None:
        settings = scope.settings
        self.scope = scope
        self.settings = settings
        self.tokens = tokens
        # refused generation -> ask for a newer token (the task layer passes worker.auth's)
        self.request_refresh = request_refresh or partial(ask_refresh, tokens)
        self.redis = scope.redis
        self.clock = clock
        self.limiter = limiter
        self.client = client or ContactsClient(
            settings, before_request=self._gate,
            token_check=token_checker(tokens, REFRESH_WAIT_S))
        self.ledger = ledger
        self.parking = parking
        self.dead_letters = dead_letters
        self.fields = fields
        self.bulk = bulk
        # A lead's lease (and its email lock) outlive the longest try: every call waiting for
        # the limiter and timing out, plus room to record the outcome.
        self.lease_s = CALLS_PER_LEAD * (settings.http_timeout_s + LIMITER_WAIT_S) + 30.0

    def durably(self, write: Callable[[], T], what: str) -> T:
        """`write()`, waiting up to LEADSYNC_OUTCOME_WAIT_S for Redis (worker/ledger/durable.py)."""
        return write_durably(write, self.settings.outcome_wait_s, what=what)

    def _gate(self, reserve: bool) -> None:
        self.limiter.acquire(reserve=reserve, max_wait_s=LIMITER_WAIT_S)

    # --- the one entry point ---------------------------------------------------------------
    def run(self, lead: Lead, *, task_id: str | None = None) -> Result:
        started = time.monotonic()
        task_id = task_id or f"local-{uuid.uuid4()}"
        message = encode_message(lead, task_id=task_id)
        lock = EmailLock(self.scope, lead.email, ttl_s=self.lease_s)
        # One batch begins the lead and, unless it may be staged, takes what a send needs.
        send = not self.bulk.may_stage(lead) and bool(lead.list_ids or self.settings.list_ids)
        opened = self.durably(lambda: open_lead(
            self.scope, self.tokens, self.ledger, self.limiter, lead_id=lead.lead_id,
            task_id=task_id, message=message, lease_s=self.lease_s, lock=lock, send=send),
            "start")
        taken = opened.begin  # not taken: the batch gave back what it took
        if taken.outcome == "settled":
            return self._log(lead, Result(LeadState(taken.state), taken.attempts,
                                          duplicate=True), started)
        if taken.outcome == "busy":
            # Held by another task under a live lease: recorded in the schedule for the lease
            # end (dropped when the lead settles first); nothing sent.
            return self._log(lead, Result(LeadState.IN_FLIGHT, 0, duplicate=True,
                                          detail={"held_until": taken.lease_until}), started)
        attempt = taken.attempts + 1
        if self.bulk.wants(lead):  # no consent, a backlog: staged for an import (worker/bulk/)
            moved, state = self.durably(lambda: self.bulk.stage(lead), "staging")
            return self._log(lead, Result(LeadState(state), attempt - 1, duplicate=not moved,
                                          detail={"path": "import"}), started)
        try:
            result = self._attempt(lead, attempt, opened)
        except OutcomeNotRecordedError:
            raise  # Redis stayed away: the task hands the message back, nothing is lost
        except Exception as exc:  # every failure is classified, none escapes to Celery
            result = self._after_failure(lead, attempt, classify(exc), exc)
        return self._log(lead, result, started)

    def dead_letter_invalid(self, exc: Exception, raw: Any, *, lead_id: str,
                            replayable: bool = False) -> Result:
        """Arguments that are not a lead, or (last resort) a failure outside every classified
        path: kept as a dead letter with the reason rather than acknowledged away."""
        started = time.monotonic()
        decision = classify(exc)
        if decision.action is not Action.DEAD_LETTER:
            decision = Decision(Action.DEAD_LETTER, False,
                                f"unexpected failure outside delivery: {decision.reason}",
                                "unexpected")
        result = self._dead_letter(lead_id, raw, decision, attempt=1, replayable=replayable)
        return log_outcome(lead_id, result, started)

    # --- one try ---------------------------------------------------------------------------
    def _attempt(self, lead: Lead, attempt: int, opened: Opened) -> Result:
        list_ids = lead.list_ids or list(self.settings.list_ids)
        if not list_ids:
            raise InvalidLeadError("no contact list: give list_ids on the lead or set "
                                   "LEADSYNC_LIST_IDS", field="list_ids")
        try:
            # Taken over after a lease ran out, a copy of the same task may have got here
            # first: under the lock, the ledger says whether it already sent.
            now_state = opened.hold(self.ledger, lead.lead_id)
            if now_state in NOTHING_TO_DO:
                return Result(LeadState(now_state), attempt - 1, duplicate=True,
                              detail={"was": "settled meanwhile"})
            with opened.lock.renewed():
                detail = self._send_with_fresh_token(lead, list_ids, opened)
            # Recorded under the lock (released in the same round trip): a copy taking the
            # lead over re-checks after this.
            return self._record_delivered(lead, attempt, detail, opened.lock)
        finally:
            opened.give_back()  # a failed try lets go here (nothing once the settle released)

    def _send_with_fresh_token(self, lead: Lead, list_ids: list[str],
                               opened: Opened) -> dict[str, Any]:
        """Send; on a 401 ask for one refresh and try once more with the new token."""
        token = opened.token(self.tokens, REFRESH_WAIT_S)
        try:
            return self._send(lead, list_ids, token)
        except UnauthorizedError:
            self.request_refresh(token.generation)
            fresh = newer_token(self.tokens, token.generation, REFRESH_WAIT_S)
            if fresh is None:
                raise
            return self._send(lead, list_ids, fresh)

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

    # --- bookkeeping: every outcome is written before the task returns ---------------------
    def _record_delivered(self, lead: Lead, attempt: int, detail: dict[str, Any],
                          lock: EmailLock) -> Result:
        moved, state = self.durably(lambda: settle_delivered(
            self.ledger, lock, lead.lead_id,
            counters=(str(detail.get("action") or "delivered_other"),),  # `deliver` counts itself
            contact_id=detail.get("contact_id"), action=detail.get("action"),
            path=detail.get("path"), delivered_at=self.clock()), "delivery")
        if not moved:  # settled by another copy meanwhile (lease taken over): keep its state
            return Result(LeadState(state), attempt, duplicate=True, detail=detail)
        return Result(LeadState.DELIVERED, attempt, detail=detail)

    def _after_failure(self, lead: Lead, attempt: int, decision: Decision,
                       exc: BaseException) -> Result:
        now = self.clock()
        if decision.action is Action.DEAD_LETTER:
            return self._dead_letter(lead.lead_id, lead.to_json_dict(), decision, attempt)
        if decision.action in (Action.PARK_QUOTA, Action.PARK_REAUTH):
            reason = TOKEN_KEY if decision.reason_code == TOKEN_KEY else REAUTH
            resume_at = now
            if decision.action is Action.PARK_QUOTA:
                reason = QUOTA
                resume_at = (exc.resume_at.timestamp() if isinstance(exc, QuotaExhaustedError)
                             else next_utc_midnight(now).timestamp())
            moved, state = self.durably(lambda: self.parking.park(
                lead, reason, resume_at, attempts=attempt - 1, now=now), "park")
            if not moved:
                return Result(LeadState(state), attempt - 1, duplicate=True)
            detail: dict[str, Any] = {"reason": reason}
            if reason == QUOTA:
                detail["resume_at"] = resume_at
            return Result(LeadState.PARKED, attempt - 1, detail=detail)
        if decision.spends_budget:
            failures = self.durably(lambda: self.ledger.count_attempt(lead.lead_id), "attempt")
            self._best_effort(lambda: self.ledger.note_error(
                lead.lead_id, decision.reason_code, decision.reason, now=now))
            spent = spend_try(failures, decision.reason, self.settings,
                              retry_after_s=decision.retry_after_s)
            if spent.exhausted:
                exhausted = Decision(Action.DEAD_LETTER, True, spent.reason, RETRIES_EXHAUSTED,
                                     decision.status_code)
                return self._dead_letter(lead.lead_id, lead.to_json_dict(), exhausted, failures)
            wait = spent.wait_s
        else:
            failures = attempt - 1
            wait = decision.retry_after_s if decision.retry_after_s is not None else (
                WAIT_COUNTDOWN_S)
            if decision.action is Action.REFRESH:
                wait = WAIT_COUNTDOWN_S  # the refresh is on its way; let this slot go meanwhile
        wait = max(0.0, wait)
        moved, state = self.durably(lambda: self.ledger.move(
            lead.lead_id, "retry", now=now, due=now + wait, last_reason=decision.reason_code,
            last_status=decision.status_code, retry_at=now + wait), "retry")
        if not moved:
            return Result(LeadState(state), failures, duplicate=True)
        return Result(LeadState.RETRYING, failures, countdown_s=wait,
                      spends_budget=decision.spends_budget,
                      detail={"reason": decision.reason_code, "http_status": decision.status_code})

    def _dead_letter(self, lead_id: str, raw: Any, decision: Decision, attempt: int, *,
                     replayable: bool = True) -> Result:
        now = self.clock()
        first_seen = self.durably(lambda: self.ledger.get(lead_id).get("first_seen"), "lookup")
        letter = DeadLetter(
            lead_id=lead_id, reason=decision.reason, reason_code=decision.reason_code,
            attempts=attempt, last_status=decision.status_code,
            first_seen=float(first_seen) if first_seen else now, dead_at=now, lead=raw,
            replayable=replayable)
        moved, state = self.durably(lambda: self.dead_letters.add(
            letter, counters=("dead_lettered",)), "dead letter")
        if not moved:
            return Result(LeadState(state), attempt, duplicate=True)
        self._best_effort(lambda: self.ledger.note_error(lead_id, decision.reason_code,
                                                         decision.reason, now=now))
        return Result(LeadState.DEAD_LETTERED, attempt,
                      detail={"reason": decision.reason_code,
                              "http_status": decision.status_code, "detail": decision.reason})

    @staticmethod
    def _best_effort(write: Callable[[], object]) -> None:
        """Counters and recent errors: shown by `status`, never worth holding a lead for."""
        try:
            write()
        except Exception as exc:  # diagnostics only; the outcome is written
            log.warning("could not update counters (%s)", type(exc).__name__)

    # --- the one log line per outcome ------------------------------------------------------
    def _log(self, lead: Lead, result: Result, started: float) -> Result:
        extra = {"truncated": ",".join(lead.truncated)} if lead.truncated else {}
        return log_outcome(lead.lead_id, result, started, **extra)
