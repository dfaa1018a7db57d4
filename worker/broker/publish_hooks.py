"""Redact leads in messages Celery itself publishes (`celery -A worker call`, `apply_async`,
retries): the `argsrepr`/`kwargsrepr` headers reach worker logs and Flower, so they must not
carry an email or a phone number. Producers in worker.leads.enqueue build redacted headers
already. Such a lead also gets the priority of its consent (worker/base/priority.py) unless the
caller chose one.

Celery builds the `task-sent` event from its own repr before this signal runs, which is why
worker.celery keeps `task_send_sent_event` off.
"""

from __future__ import annotations

from typing import Any

from celery.signals import before_task_publish

from worker.base.names import SYNC_LEAD
from worker.base.priority import priority_for
from worker.leads.wire import redacted_argsrepr, redacted_kwargsrepr


@before_task_publish.connect
def redact_lead_headers(
    sender: str | None = None,
    body: Any = None,
    headers: dict[str, Any] | None = None,
    properties: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    """Replace Celery's repr of a `leadsync.sync_lead` call with the redacted form."""
    if sender != SYNC_LEAD or headers is None:
        return
    if isinstance(body, tuple | list) and len(body) >= 2:  # protocol 2: (args, kwargs, embed)
        args, kwargs = body[0], body[1]
    else:  # protocol 1 or unknown: say nothing rather than leak
        args, kwargs = (), {}
    headers["argsrepr"] = redacted_argsrepr(list(args) if isinstance(args, tuple | list) else [])
    headers["kwargsrepr"] = redacted_kwargsrepr(kwargs if isinstance(kwargs, dict) else {})
    if properties is not None and properties.get("priority") is None:
        lead = args[0] if isinstance(args, tuple | list) and len(args) == 1 else None
        properties["priority"] = priority_for(isinstance(lead, dict)
                                              and lead.get("consent") is True)
