"""The batcher/poller (`leadsync.bulk_import`, beat, control queue): send, poll, settle imports.

One run, under a Redis lock (owner token + TTL, released only by its owner): the backlog's list
is staged in hundreds for up to STAGE_BUDGET_S (worker/bulk/backlog.py), every batch whose
next step is due is sent (no activity id yet) or polled (backoff 1, 2, 4 ... s up to
LEADSYNC_BULK_POLL_MAX_S, at most LEADSYNC_BULK_MAX_POLLS polls, then its leads go back), then
staged leads are formed into new batches and sent at once. The activity id is stored as soon
as the 201 arrives; a crash before that re-sends the batch, which is safe (an import is an
upsert by email). The 1,000-queued-activities 429 and the per-second 429 are throttles: the
batch waits, no lead spends a try. Imports and polls stay inside the quota plan's bulk budget.
Rows and bytes sent and each import's time to settle are counted for the expected finish.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import LockError
from redis.lock import Lock

from worker.auth.access import request_refresh, usable_access_token
from worker.auth.token_store import TokenStore
from worker.base.backoff import backoff_s, ceiling_s
from worker.base.errors import (
    PermanentAPIError,
    QuotaExceededError,
    QuotaExhaustedError,
    ThrottledError,
    UnauthorizedError,
)
from worker.base.redaction import scrub
from worker.base.redis_text import text
from worker.base.scope import Scope
from worker.bulk.backlog import BacklogStager
from worker.bulk.batcher import Batcher
from worker.bulk.plan import bulk_budget
from worker.bulk.settle import Settler, emails_of
from worker.bulk.staging import BulkGate
from worker.delivery.contacts import ContactsClient
from worker.delivery.ratelimit import FleetLimiter, next_utc_midnight
from worker.ledger.deadletter import DeadLetters
from worker.ledger.ledger import Ledger

log = logging.getLogger("leadsync.bulk")
RUN_BUDGET_S = 30.0  # a run starts no step after this; the next run goes on
STAGE_BUDGET_S = 15.0  # staging from the backlog's list, then the batches' sends and polls
LOCK_MARGIN_S = 5.0  # the lock outlives one step (one call, its limiter wait, the writes) by this
THROTTLE_WAIT_S = 30.0  # a full activity queue drains in minutes; look again in 30 s
LIMITER_WAIT_S = 2.0  # no slot that soon: the batch waits for the next run
TOKEN_WAIT_S = 3.0
DONE = frozenset({"completed"})
BROKEN = frozenset({"failed", "timed_out", "cancelled"})


@dataclass
class Report:
    locked: bool = True
    staged: int = 0
    formed: int = 0
    sent: int = 0
    polled: int = 0
    settled: int = 0
    counts: dict[str, int] | None = None


class Importer:
    """One batcher/poller run's worth of state; the Account builds it (`Account.importer`)."""

    def __init__(self, scope: Scope, *, tokens: TokenStore, limiter: FleetLimiter, ledger: Ledger,
                 dead_letters: DeadLetters, gate: BulkGate, client: ContactsClient | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        settings = scope.settings
        self.scope = scope
        self.settings = settings
        self.redis = scope.redis
        self.keys = scope.keys.bulk
        self.clock = clock
        self.tokens = tokens
        self.limiter = limiter
        self.client = client or ContactsClient(settings, before_request=self._gate)
        self.batcher = Batcher(scope)
        self.settler = Settler(scope, ledger, dead_letters)
        self.stager = BacklogStager(scope, ledger, gate)
        # A killed holder blocks imports for one TTL: one step's length, not a whole run's.
        self.lock_ttl_ms = int((settings.http_timeout_s + LIMITER_WAIT_S + LOCK_MARGIN_S) * 1000)
        self._lock: Lock | None = None

    def _gate(self, reserve: bool) -> None:
        self.limiter.acquire(reserve=reserve, max_wait_s=LIMITER_WAIT_S)

    def run(self) -> Report:
        """One run under the lock; a run already going elsewhere makes this one a no-op."""
        # redis-py's owner-token lock, as worker/delivery/email_lock.py and worker/auth/lock.py use.
        self._lock = self.redis.lock(self.keys.lock, timeout=self.lock_ttl_ms / 1000,
                                     blocking=False, thread_local=False)
        if not self._lock.acquire():
            return Report(locked=False)
        try:
            return self._run(time.monotonic() + RUN_BUDGET_S)
        finally:
            with contextlib.suppress(LockError):  # expired or taken over: nothing of ours
                self._lock.release()

    def _still_ours(self) -> bool:
        """Renew the lock before a step; False when it was lost (then stop: another runs)."""
        assert self._lock is not None
        try:
            self._lock.reacquire()
        except LockError:
            return False
        return True

    def _run(self, deadline: float) -> Report:
        report = Report(counts={"delivered": 0, "dead_lettered": 0, "sent_back": 0})
        assert self._lock is not None
        token = self._lock.local.token
        if token is not None:
            report.staged = self.stager.run(token, self._still_ours,
                                            time.monotonic() + STAGE_BUDGET_S)
        now = self.clock()
        if self.batcher.ready(now):
            created, lost = self.batcher.form(now)
            report.formed = len(created)
            for lead_id in lost:  # no message to build a row from (should not happen)
                self.redis.zrem(self.keys.staged, lead_id)
                self.redis.hdel(self.keys.groups, lead_id)
                self.settler.dead_letter(lead_id, "staged lead has no kept message",
                                         "message_lost")
        for raw in self.redis.zrange(self.keys.batches, 0, -1):
            if time.monotonic() > deadline or not self._still_ours():
                break
            batch_id = text(raw)
            self._advance(batch_id, report)
        return report

    def _advance(self, batch_id: str, report: Report) -> None:
        key = self.keys.batch(batch_id)
        batch = {text(k): text(v) for k, v in self.redis.hgetall(key).items()}
        if not batch:
            self.redis.zrem(self.keys.batches, batch_id)
            return
        now = self.clock()
        if float(batch.get("next_at") or 0) > now:
            return
        if bulk_budget(self.scope, self.limiter, now)[3] < 1:
            self.redis.hset(key, "next_at", f"{next_utc_midnight(now).timestamp():.3f}")
            return
        try:
            if not batch.get("activity_id"):
                self._send(batch_id, key, batch, report)
            else:
                self._poll(batch_id, key, batch, report)
        except (ThrottledError, QuotaExceededError, QuotaExhaustedError) as exc:
            wait = THROTTLE_WAIT_S
            if isinstance(exc, QuotaExceededError | QuotaExhaustedError):
                wait = next_utc_midnight(now).timestamp() - now
            elif getattr(exc, "retry_after_s", None):
                wait = max(float(exc.retry_after_s or 0), 1.0)
            self.redis.hset(key, "next_at", f"{now + wait:.3f}")
            self.redis.hincrby(self.keys.counters, "throttled", 1)
            log.info("bulk: batch %s waits %.0f s (%s)", batch_id, wait, type(exc).__name__)
        except UnauthorizedError:
            token = usable_access_token(self.tokens, TOKEN_WAIT_S)
            request_refresh(self.tokens, token.generation)
            self.redis.hset(key, "next_at", f"{now + 2:.3f}")
        except PermanentAPIError as exc:
            if batch.get("activity_id"):  # the activity is gone (404): send the leads back
                self._finish(batch_id, key, batch, None, report, "activity_lost", str(exc))
            else:  # the import itself was refused (a list that does not exist ...)
                for lead_id in _ids(batch):
                    report.counts["dead_lettered"] += self.settler.dead_letter(  # type: ignore[index]
                        lead_id, scrub(str(exc)), "import_rejected")
                self._drop(batch_id, key)
        except Exception as exc:  # transient: try again after a backoff, no lead spends a try
            tries = int(self.redis.hincrby(key, "errors", 1))
            wait = backoff_s(tries, 1.0, self.settings.bulk_poll_max_s)
            self.redis.hset(key, "next_at", f"{now + wait:.3f}")
            log.warning("bulk: batch %s: %s; again in %.1f s", batch_id,
                        scrub(str(exc))[:200] or type(exc).__name__, wait)

    def _send(self, batch_id: str, key: str, batch: dict[str, str], report: Report) -> None:
        token = usable_access_token(self.tokens, TOKEN_WAIT_S)
        self.redis.hincrby(key, "sends", 1)
        answer = self.client.contacts_json_import(token.value, batch["body"])
        now = self.clock()
        activity_id = str(answer["activity_id"])
        self.redis.hset(key, mapping={"activity_id": activity_id, "sent_at": f"{now:.3f}",
                                      "polls": 0, "next_at": f"{now + 1.0:.3f}"})
        pipe = self.redis.pipeline(transaction=False)  # also what `status` estimates from
        pipe.hincrby(self.keys.counters, "imports", 1)
        pipe.hincrby(self.keys.counters, "rows_sent", int(batch.get("count") or 0))
        pipe.hincrby(self.keys.counters, "bytes_sent", int(batch.get("bytes") or 0))
        pipe.execute()
        report.sent += 1
        log.info("bulk: batch %s sent: activity %s, %s leads", batch_id, activity_id,
                 batch.get("count"))

    def _poll(self, batch_id: str, key: str, batch: dict[str, str], report: Report) -> None:
        token = usable_access_token(self.tokens, TOKEN_WAIT_S)
        activity = self.client.activity(token.value, batch["activity_id"])
        polls = int(self.redis.hincrby(key, "polls", 1))
        self.redis.hincrby(self.keys.counters, "polls", 1)
        report.polled += 1
        state = str(activity.get("state") or "")
        if state in DONE:
            self._finish(batch_id, key, batch, activity, report, "", "")
        elif state in BROKEN:
            self._finish(batch_id, key, batch, None, report, f"import_{state}",
                         f"the import activity ended {state}")
        elif polls >= self.settings.bulk_max_polls:
            self._finish(batch_id, key, batch, None, report, "import_poll_cap",
                         f"the import was not done after {polls} polls")
        else:
            wait = ceiling_s(polls + 1, 1.0, self.settings.bulk_poll_max_s)
            self.redis.hset(key, "next_at", f"{self.clock() + wait:.3f}")

    def _finish(self, batch_id: str, key: str, batch: dict[str, str],
                activity: dict[str, Any] | None, report: Report, code: str,
                reason: str) -> None:
        lead_ids = _ids(batch)
        assert report.counts is not None
        if activity is not None:
            counts = self.settler.completed(lead_ids, emails_of(batch["body"]), activity,
                                            batch["activity_id"], between=self._still_ours)
            if batch.get("sent_at"):  # how long an import takes to settle, for `status`
                pipe = self.redis.pipeline(transaction=False)
                pipe.hincrbyfloat(self.keys.counters, "settle_s",
                                  max(self.clock() - float(batch["sent_at"]), 0.0))
                pipe.hincrby(self.keys.counters, "settled_imports", 1)
                pipe.execute()
        else:
            counts = {"sent_back": sum(self.settler.send_back(i, code, reason)
                                       for i in lead_ids)}
            self.redis.hincrby(self.keys.counters, "resent", 1)
        for name, value in counts.items():
            report.counts[name] = report.counts.get(name, 0) + value
        report.settled += 1
        self._drop(batch_id, key)
        log.info("bulk: batch %s settled: %s", batch_id,
                 " ".join(f"{k}={v}" for k, v in counts.items()))

    def _drop(self, batch_id: str, key: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(key)
        pipe.zrem(self.keys.batches, batch_id)
        pipe.execute()


def _ids(batch: dict[str, str]) -> list[str]:
    return [i for i in batch.get("lead_ids", "").split(",") if i]
