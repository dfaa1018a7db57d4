"""What `leadsync auth status` and `leadsync status` show about the tokens: one dict.

Besides the state, how the tokens sit at rest (encrypted, clear) and the open LEADSYNC_TOKEN_KEY
incidents of any process (a worker with a wrong key shows even when this CLI has the right one).
"""

from __future__ import annotations

import time
from typing import Any

from worker.auth import alerts, token_key
from worker.auth.access import state_of
from worker.auth.refresher import refresh_reason
from worker.auth.timing import beat_can_serve, refresh_lead_s
from worker.auth.token_record import SEALED_FIELDS, STATE_TOKEN_KEY_INVALID
from worker.auth.token_store import TokenStore
from worker.base.errors import TokenKeyError


def key_facts(store: TokenStore, raw: dict[str, str]) -> dict[str, Any]:
    """Is a key set, how the record (`raw`, as read) is stored, which keys failed to open it
    lately."""
    return {
        "token_key_set": store.settings.token_key is not None,
        "token_key": store.incidents.fingerprint,
        "tokens_at_rest": token_key.at_rest(raw, SEALED_FIELDS),
        "token_key_incidents": store.incidents.open(),
    }


def token_status(store: TokenStore, *, now: float | None = None) -> dict[str, Any]:
    """JSON-ready facts about the stored tokens (the record read once); never a token value."""
    now = time.time() if now is None else now
    settings = store.settings
    raw = store.raw()
    keys = key_facts(store, raw)
    try:
        record = store.opened(raw)
    except TokenKeyError as exc:
        return {"state": STATE_TOKEN_KEY_INVALID, "state_reason": str(exc),
                "account": settings.account, "sending_possible": False,
                "encrypted_at_rest": keys["tokens_at_rest"] == "encrypted", **keys}
    state = state_of(record)
    if record is None:
        return {"state": state, "account": settings.account, "sending_possible": False, **keys}
    lifetime = record.lifetime_s
    left = record.expires_at - now
    # The earliest moment the refresher will act: margin reached or max age, whichever first.
    planned = None
    if record.access_token:
        planned = min(
            record.expires_at - refresh_lead_s(settings, lifetime),
            max(record.last_refresh_at, record.authorized_at) + settings.refresh_max_age_s,
        )
        if record.next_attempt_at:
            planned = max(planned, record.next_attempt_at)
    return {
        "state": state,
        "state_reason": record.state_reason or None,
        "account": settings.account,
        "sub": record.sub or None,
        "platform_user_id": record.platform_user_id or None,
        "scopes": record.scopes.split(),
        "access_token_expires_at": record.expires_at or None,
        "access_token_seconds_left": round(left, 1) if record.expires_at else None,
        "access_token_lifetime_s": lifetime or None,
        "refresh_token_mode": record.refresh_token_mode,
        "generation": record.generation,
        "authorized_at": record.authorized_at or None,
        "last_refresh_at": record.last_refresh_at or None,
        "refresh_count": record.refresh_count,
        "next_refresh_at": planned,
        "refresh_due": refresh_reason(record, settings, now) is not None,
        # False: the lifetime is too short for beat ticks alone; workers ask before expiry.
        "beat_serves_lifetime": beat_can_serve(settings, lifetime) if lifetime else None,
        "refresh_in_flight_since": record.attempt_started_at or None,
        "failure_count": record.failure_count,
        "next_attempt_at": record.next_attempt_at or None,
        "alert_active": alerts.alert_active(store.scope),
        "sending_possible": state in ("ok", "refresh_failing"),
        "encrypted_at_rest": keys["tokens_at_rest"] == "encrypted",
        **keys,
    }
