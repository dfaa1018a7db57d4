"""What `leadsync auth status` and `leadsync status` show about the tokens: one dict."""

from __future__ import annotations

import time
from typing import Any

from redis import Redis

from worker.auth import alerts
from worker.auth.access import token_state
from worker.auth.refresher import refresh_reason
from worker.auth.timing import beat_can_serve, refresh_lead_s
from worker.auth.token_store import TokenStore
from worker.settings import Settings


def token_status(settings: Settings, redis: Redis, *, now: float | None = None) -> dict[str, Any]:
    """JSON-ready facts about the stored tokens; never a token value."""
    now = time.time() if now is None else now
    record = TokenStore(settings, redis).read()
    state = token_state(settings, redis)
    if record is None:
        return {"state": state, "account": settings.account, "sending_possible": False}
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
        "alert_active": alerts.alert_active(settings, redis),
        "sending_possible": state in ("ok", "refresh_failing"),
        "encrypted_at_rest": settings.token_key is not None,
    }
