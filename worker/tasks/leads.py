"""`leadsync.sync_lead` (queue `leads`), `leadsync.resume_parked` and `leadsync.reconcile`
(beat, control queue): thin wrappers around worker.delivery.run, worker.ledger.parking,
worker.ledger.reconcile.

`sync_lead` returns only once the lead's outcome is in Redis (delivered, dead letter, parked,
or a retry in the schedule): Celery then acknowledges the message. There is no `self.retry`:
a retry is a schedule entry written with the ledger step, not a message re-published. When
Redis stays away longer than LEADSYNC_OUTCOME_WAIT_S the task raises `Reject(requeue=True)`:
kombu pushes the message back and drops it from `unacked` in one transaction, or, with Redis
still away, does neither, and the message waits in `unacked` for kombu's sweep.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from celery import Task, shared_task
from celery.exceptions import Reject

from worker.account import Account
from worker.auth.access import sending_possible
from worker.base.errors import InvalidLeadError
from worker.base.names import LEADS_QUEUE, RECONCILE, RESUME_PARKED, SYNC_LEAD
from worker.base.redaction import fingerprint
from worker.delivery.run import Delivery
from worker.leads.lead import Lead
from worker.leads.wire import lead_from_task_args
from worker.ledger.durable import OutcomeNotRecordedError

INVALID_PREFIX = "bad_"
log = logging.getLogger("leadsync.tasks")


def invalid_id(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """A stable id for arguments that are not a lead (the same bad message, the same id)."""
    return INVALID_PREFIX + fingerprint(json.dumps([args, kwargs], sort_keys=True, default=repr))


@shared_task(bind=True, name=SYNC_LEAD, queue=LEADS_QUEUE, ignore_result=True)
def sync_lead(self: Task[Any, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Deliver one lead; anything that is not one becomes a dead letter with the reason."""
    delivery = Account.current().delivery()  # this thread's, built once
    raw: Any = args[0] if len(args) == 1 and not kwargs else {"args": args, "kwargs": kwargs}
    lead: Lead | None = None
    try:
        try:
            lead = lead_from_task_args(args, kwargs)
        except InvalidLeadError as exc:
            result = delivery.dead_letter_invalid(exc, raw, lead_id=invalid_id(args, kwargs))
            return {"status": str(result.status)}
        result = delivery.run(lead, task_id=self.request.id)
    except OutcomeNotRecordedError as exc:
        # Not acknowledged: requeued in one kombu transaction, or left in `unacked`.
        log.warning("task %s handed back unacknowledged: %s", self.request.id, exc)
        raise Reject(str(exc), requeue=True) from None
    except Exception as exc:  # last resort: Celery would ack a failed task away
        return _last_resort(delivery, exc, raw, lead, self.request.id, args, kwargs)
    return {"lead_id": lead.lead_id, "status": str(result.status),
            "duplicate": result.duplicate}


def _last_resort(delivery: Delivery, exc: Exception, raw: Any, lead: Lead | None,
                 task_id: str | None, args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> dict[str, Any]:
    """A failure no path classified (a bug, an input nobody foresaw): keep the lead as a dead
    letter with the reason, or, if even that cannot be written, hand the message back."""
    lead_id = lead.lead_id if lead is not None else invalid_id(args, kwargs)
    log.error("task %s failed outside delivery (%s); keeping lead %s as a dead letter",
              task_id, type(exc).__name__, lead_id)
    try:
        payload = lead.to_json_dict() if lead is not None else raw
        result = delivery.dead_letter_invalid(exc, payload, lead_id=lead_id,
                                              replayable=lead is not None)
    except Exception as again:  # nothing recorded: must not be acked
        log.warning("task %s handed back unacknowledged: %s", task_id, type(again).__name__)
        raise Reject(type(again).__name__, requeue=True) from None
    return {"lead_id": lead_id, "status": str(result.status)}


@shared_task(name=RESUME_PARKED, ignore_result=True)
def resume_parked() -> dict[str, int]:
    """Put parked leads back on the queue once their reason is gone (beat)."""
    account = Account.current()
    resumed = account.parking.resume_due(sending_possible=sending_possible(account.tokens))
    return {"resumed": resumed}


@shared_task(name=RECONCILE, ignore_result=True)
def reconcile() -> dict[str, int]:
    """Promote due retries; put back leads whose message exists nowhere (beat)."""
    report = Account.current().reconciler().run()
    if report.requeued:
        log.warning("reconcile: %d leads had no message anywhere; put back on the queue",
                    report.requeued)
    return {"promoted": report.promoted, "checked": report.checked,
            "requeued": report.requeued}
