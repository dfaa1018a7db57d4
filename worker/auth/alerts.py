"""Tell a person when only a person can help: ERROR log + webhook, once per incident.

The incident marker lives in Redis so a fleet of workers alerts once; a successful
re-authorization clears it, so the next incident alerts again.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import requests

from worker.base.redaction import scrub
from worker.base.scope import Scope
from worker.base.settings import Settings

log = logging.getLogger(__name__)


def raise_alert(scope: Scope, *, reason: str, generation: int) -> bool:
    """Alert once for this incident; True when this call was the one that alerted."""
    settings = scope.settings
    payload: dict[str, Any] = {
        "event": "leadsync.token.reauth_required",
        "account": settings.account,
        "reason": scrub(reason),
        "generation": generation,
        "at": time.time(),
        "action": "run `leadsync auth device` (or `auth login` / `auth import`)",
    }
    if not scope.redis.set(scope.keys.token_alert_sent, json.dumps(payload), nx=True):
        return False
    log.error(
        "Constant Contact authorization lost for account %s: %s. Sending is paused; run "
        "`leadsync auth device` to restore it.",
        settings.account,
        payload["reason"],
        extra={"event": "token_reauth_required", "generation": generation},
    )
    if settings.alert_webhook_url:
        _post(settings, payload)
    return True


def _post(settings: Settings, payload: dict[str, Any]) -> None:
    url = settings.alert_webhook_url or ""
    try:
        response = requests.post(url, json=payload, timeout=settings.http_timeout_s)
    except requests.RequestException as exc:
        log.warning("alert webhook failed: %s", type(exc).__name__)
        return
    if response.status_code >= 300:
        log.warning("alert webhook answered %s", response.status_code)


def clear_alert(scope: Scope) -> None:
    """Close the incident (after a successful re-authorization)."""
    scope.redis.delete(scope.keys.token_alert_sent)


def alert_active(scope: Scope) -> bool:
    return bool(scope.redis.exists(scope.keys.token_alert_sent))
