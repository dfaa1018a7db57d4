"""A finished import's leads to their end: delivered (`imported`), dead letters, or sent back.

`activity_errors` strings name a row by its line (`Line 3: ...`, 1-based in the order sent)
and often by its email; both are mapped back to the lead, and the string, scrubbed of emails
and phones, becomes the dead letter's reason. Rows past the activity's `items_total_count` (a
silent cut) and every lead of a failed, timed-out or cancelled import are sent back through
the retry schedule, spending one try each. Every move is one ledger step that refuses a lead
already settled, so settling the same batch twice (after a crash) counts nobody twice.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from worker.base.errors import InvalidLeadError
from worker.base.redaction import scrub
from worker.base.scope import Scope
from worker.delivery.outcome import RETRIES_EXHAUSTED, spend_try
from worker.leads.wire import parse_message
from worker.ledger.deadletter import DeadLetter, DeadLetters
from worker.ledger.lead_state import LeadState
from worker.ledger.ledger import Ledger
from worker.lua import script

log = logging.getLogger("leadsync.delivery")  # the one line per outcome, as for single leads
_LINE = re.compile(r"\bline\s+(\d+)\b", re.IGNORECASE)
_EMAIL = re.compile(r"[^\s<>\"'(),;:]+@[^\s<>\"'(),;:]+")
REFUSED = "import_refused"
CHUNK = 500  # leads settled per round trip


def refused_rows(errors: list[str], emails: list[str]) -> dict[int, str]:
    """row index -> the error string naming it (by line number, else by email)."""
    index = {email.lower(): i for i, email in enumerate(emails)}
    out: dict[int, str] = {}
    for text in errors:
        text = str(text)
        row: int | None = None
        for candidate in _EMAIL.findall(text):
            row = index.get(candidate.strip(".").lower())
            if row is not None:
                break
        if row is None:
            match = _LINE.search(text)
            if match and 1 <= int(match.group(1)) <= len(emails):
                row = int(match.group(1)) - 1
        if row is not None:
            out.setdefault(row, text)
    return out


class Settler:
    def __init__(self, scope: Scope, ledger: Ledger, dead_letters: DeadLetters) -> None:
        self.settings = scope.settings
        self.redis = scope.redis
        self.ledger = ledger
        self.dead_letters = dead_letters
        self.keys = scope.keys
        self._count = script("count_imported").register(scope.redis)

    def completed(self, lead_ids: list[str], emails: list[str], activity: dict[str, Any],
                  activity_id: str, *, between: Callable[[], object] = lambda: None
                  ) -> dict[str, int]:
        """Each lead to its end; `between` runs after each chunk (the importer renews its
        lock: settling 40,000 leads outlasts one step's lock)."""
        errors = [str(e) for e in activity.get("activity_errors") or []]
        refused = refused_rows(errors, emails)
        total = (activity.get("status") or {}).get("items_total_count")
        processed = len(lead_ids) if not isinstance(total, int) else min(total, len(lead_ids))
        counts = {"delivered": 0, "dead_lettered": 0, "sent_back": 0}
        delivered: list[str] = []
        for row, lead_id in enumerate(lead_ids):
            if row >= processed:
                counts["sent_back"] += self.send_back(lead_id, "import_cut",
                                                      "row past what the import processed")
            elif row in refused:
                counts["dead_lettered"] += self._refuse(lead_id, scrub(refused[row]))
            else:
                delivered.append(lead_id)
        for start in range(0, len(delivered), CHUNK):
            counts["delivered"] += self._deliver(delivered[start:start + CHUNK], activity_id)
            between()
        return counts

    def _deliver(self, lead_ids: list[str], activity_id: str) -> int:
        """One ledger step each, all in one round trip, then one count. Bulk volumes: the
        settled hash keeps state, first_seen, updated_at (the delivery time) and action only;
        `imported` says the path, and the task id goes with the count (count_imported.lua).
        Each `deliver` step counts the lead delivered itself (worker/ledger/delivered.py)."""
        moves = self.ledger.move_many("deliver", [(lead_id, None) for lead_id in lead_ids],
                                      now=time.time(), action="imported")
        done = [lead_id for lead_id, (_moved, state) in zip(lead_ids, moves, strict=True)
                if state == LeadState.DELIVERED]
        self._best_effort(lambda: self._count(
            keys=[self.keys.stats, *(self.keys.lead_outcome(i) for i in done)],
            args=["imported"]))
        for lead_id, (moved, state) in zip(lead_ids, moves, strict=True):
            _log(lead_id, state, logging.INFO, action="imported", path="import",
                 activity_id=activity_id, **({} if moved else {"duplicate": True}))
        return sum(moved for moved, _state in moves)

    def _refuse(self, lead_id: str, reason: str) -> int:
        return self.dead_letter(lead_id, reason, REFUSED)

    def dead_letter(self, lead_id: str, reason: str, code: str, *,
                    attempts: int | None = None) -> int:
        """`attempts`: the tries already counted (a send-back counts its own before this);
        by default the ledger's count plus this one, which it has not counted."""
        now = time.time()
        entry = self.ledger.get(lead_id)
        raw, replayable = self._lead_json(lead_id)
        if attempts is None:
            attempts = int(entry.get("attempts") or 0) + 1
        letter = DeadLetter(
            lead_id=lead_id, reason=reason, reason_code=code,
            attempts=attempts, last_status=None,
            first_seen=float(entry.get("first_seen") or now), dead_at=now, lead=raw,
            replayable=replayable)
        moved, state = self.dead_letters.add(letter)
        if moved:
            self._best_effort(lambda: self.ledger.bump("dead_lettered"))
            self._best_effort(lambda: self.ledger.note_error(lead_id, code, reason, now=now))
        _log(lead_id, state, logging.WARNING, reason=code, detail=reason, path="import",
             **({} if moved else {"duplicate": True}))
        return int(moved)

    def send_back(self, lead_id: str, code: str, reason: str) -> int:
        """Back through the retry schedule (one try spent); dead letter when none are left."""
        if self.ledger.state(lead_id) != LeadState.STAGED:
            return 0
        failures = self.ledger.count_attempt(lead_id)
        spent = spend_try(failures, reason, self.settings)  # as a single lead's failed try
        if spent.exhausted:
            return self.dead_letter(lead_id, spent.reason, RETRIES_EXHAUSTED, attempts=failures)
        now = time.time()
        wait = spent.wait_s
        moved, state = self.ledger.move(lead_id, "retry", now=now, due=now + wait,
                                        last_reason=code, retry_at=now + wait)
        _log(lead_id, state, logging.INFO, reason=code, path="import",
             countdown_s=round(wait, 3))
        return int(moved)

    def _lead_json(self, lead_id: str) -> tuple[Any, bool]:
        message = self.ledger.message(lead_id)
        if message is not None:
            try:
                return parse_message(message).to_json_dict(), True
            except InvalidLeadError:
                pass
        return {"lead_id": lead_id}, False

    @staticmethod
    def _best_effort(write: Any) -> None:
        try:
            write()
        except Exception as exc:  # counters only
            log.warning("could not update counters (%s)", type(exc).__name__)


def emails_of(body: str) -> list[str]:
    return [str(row.get("email", "")) for row in json.loads(body)["import_data"]]


def _log(lead_id: str, state: str, level: int, **fields: Any) -> None:
    fields = {"status": state, **fields}
    summary = " ".join(f"{k}={v}" for k, v in fields.items())
    log.log(level, "lead %s %s", lead_id, summary, extra={"lead_id": lead_id, **fields})
