"""`leadsync.bulk_import` (beat, control queue): one run of the batcher/poller (worker/bulk/)."""

from __future__ import annotations

import logging

from celery import shared_task

from worker.base.names import BULK_IMPORT
from worker.base.redis_conn import get_redis
from worker.base.settings import get_settings
from worker.bulk.importer import Importer

log = logging.getLogger("leadsync.tasks")


@shared_task(name=BULK_IMPORT, ignore_result=True)
def bulk_import() -> dict[str, int]:
    """Form, send, poll and settle imports; a run already going elsewhere makes this a no-op."""
    settings = get_settings()
    if settings.bulk == "off":
        return {}
    report = Importer(settings, get_redis(settings)).run()
    return {"locked": int(report.locked), "formed": report.formed, "sent": report.sent,
            "polled": report.polled, "settled": report.settled, **(report.counts or {})}
