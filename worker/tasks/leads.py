"""`leadsync.sync_lead` (queue `leads`) and `leadsync.resume_parked` (beat): thin wrappers.

The logic is in worker.delivery; this module only reads the arguments, hands the lead over,
and turns a countdown into `self.retry` (Celery publishes the retry before acking the message,
so a crash in between duplicates the lead at worst, which the ledger then skips).
"""

from __future__ import annotations

import json
import threading
from typing import Any

from celery import Task, shared_task
from redis.exceptions import RedisError

from worker.auth.access import sending_possible
from worker.delivery import WAIT_COUNTDOWN_S, Delivery, safe_run
from worker.errors import InvalidLeadError, LeadsyncError
from worker.parking import ParkingLot
from worker.redaction import fingerprint
from worker.redis_conn import get_redis
from worker.settings import get_settings
from worker.wire import lead_from_task_args

INVALID_PREFIX = "bad_"
_local = threading.local()


def _delivery() -> Delivery:
    """One Delivery per thread (its HTTP session is not shared across threads or forks)."""
    delivery: Delivery | None = getattr(_local, "delivery", None)
    if delivery is None:
        settings = get_settings()
        delivery = _local.delivery = Delivery(settings, get_redis(settings))
    return delivery


def invalid_id(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """A stable id for arguments that are not a lead (the same bad message, the same id)."""
    return INVALID_PREFIX + fingerprint(json.dumps([args, kwargs], sort_keys=True, default=repr))


@shared_task(bind=True, name="leadsync.sync_lead", queue="leads", max_retries=None,
             ignore_result=True)
def sync_lead(self: Task[Any, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Deliver one lead; anything that is not one becomes a dead letter with the reason."""
    delivery = _delivery()
    try:
        lead = lead_from_task_args(args, kwargs)
    except InvalidLeadError as exc:
        raw: Any = args[0] if len(args) == 1 and not kwargs else {"args": args, "kwargs": kwargs}
        try:
            result = delivery.dead_letter_invalid(exc, raw, lead_id=invalid_id(args, kwargs))
        except (LeadsyncError, RedisError):
            # Could not write the dead letter (Redis refused): try again rather than let a
            # failed task be acknowledged and the message vanish.
            raise self.retry(countdown=WAIT_COUNTDOWN_S) from None
        return {"status": result.status}
    result = safe_run(delivery, lead, self.request.id)
    if result.status == "retrying":
        raise self.retry(countdown=result.countdown_s)
    return {"lead_id": lead.lead_id, "status": result.status}


@shared_task(name="leadsync.resume_parked", ignore_result=True)
def resume_parked() -> dict[str, int]:
    """Put parked leads back on the queue once their reason is gone (beat)."""
    settings = get_settings()
    redis = get_redis(settings)
    resumed = ParkingLot(settings, redis).resume_due(
        sending_possible=sending_possible(settings, redis))
    return {"resumed": resumed}
