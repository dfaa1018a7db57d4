"""The plain alternative bench_pipeline.py measures leadsync against: a bare Celery task that
POSTs a prepared sign_up_form body to the sandbox. Celery's defaults (early acks, prefetch 4),
no ledger, no limiter, no email lock, no token store: what a team would write on day one.

    celery -A tests.benchmarks.bare_celery worker   (BARE_BROKER_URL, BARE_API_BASE_URL,
                                                     BARE_TOKEN from the environment)
"""

from __future__ import annotations

import os
from typing import Any

import requests
from celery import Celery

app = Celery("bare", broker=os.environ.get("BARE_BROKER_URL", "redis://127.0.0.1:1/0"))
app.conf.worker_hijack_root_logger = False
_session = requests.Session()


@app.task(name="bare.sign_up")
def sign_up(body: dict[str, Any]) -> None:
    answer = _session.post(f"{os.environ['BARE_API_BASE_URL']}/contacts/sign_up_form",
                           json=body, timeout=10,
                           headers={"Authorization": f"Bearer {os.environ['BARE_TOKEN']}"})
    answer.raise_for_status()
