"""`leadsync.bulk_import` (beat, control queue): one run of the batcher/poller (worker/bulk/)."""

from __future__ import annotations

import logging

from celery import shared_task

from worker.account import Account
from worker.base.names import BULK_IMPORT

log = logging.getLogger("leadsync.tasks")


@shared_task(name=BULK_IMPORT, ignore_result=True)
def bulk_import() -> dict[str, int]:
    """Form, send, poll and settle imports; a run already going elsewhere makes this a no-op."""
    account = Account.current()
    if account.settings.bulk == "off":
        return {}
    report = account.importer().run()
    return {"locked": int(report.locked), "staged": report.staged, "formed": report.formed,
            "sent": report.sent, "polled": report.polled, "settled": report.settled,
            **(report.counts or {})}
