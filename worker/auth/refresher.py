"""The single refresh path (beat task, 401 requests and `auth refresh` all come here).

Lock, re-read, decide, pass the 1/s gate, mark the attempt, ask the token endpoint, verify,
and write the new pair (compare-and-set on the generation) before the lock is released.
`invalid_grant` is judged only after a re-read: if nobody stored a newer pair, a person must
re-authorize (state reauth_required + one alert). Anything else is transient: refresh_failing
with a backoff that the next beat honours.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis import Redis

from worker.auth import alerts
from worker.auth.grant import build_record
from worker.auth.jwt_verify import JwksCache, jwks_cache_for, verify_access_token
from worker.auth.lock import pass_token_endpoint_gate, refresh_lock, still_owned
from worker.auth.oauth_client import OAuthClient
from worker.auth.token_record import (
    STATE_REAUTH_REQUIRED,
    STATE_REFRESH_FAILING,
    TokenRecord,
)
from worker.auth.token_store import StaleWriteError, TokenStore
from worker.errors import (
    OAuthServerError,
    OAuthTransientError,
    RefreshLockTimeoutError,
    TokenVerificationError,
)
from worker.keys import Keys
from worker.redaction import redact_token
from worker.settings import Settings

log = logging.getLogger(__name__)
BACKOFF_CAP_S = 300.0


@dataclass(frozen=True)
class RefreshOutcome:
    # refreshed | not_needed | already_refreshed | busy | backing_off | failing |
    # reauth_required | not_authorized
    action: str
    generation: int
    detail: str = ""


def backoff_s(failures: int, retry_after_s: float | None = None) -> float:
    """Wait before the next attempt after `failures` transient failures (1, 2, 4 … 300 s)."""
    wait = min(2.0 ** max(failures - 1, 0), BACKOFF_CAP_S)
    return max(wait, retry_after_s or 0.0)


def refresh_reason(record: TokenRecord, settings: Settings, now: float) -> str | None:
    """Why the pair should be refreshed now, or None."""
    if not record.access_token:
        return "no access token yet"
    left = record.expires_at - now
    if left < settings.refresh_margin_ratio * record.lifetime_s or left <= 0:
        return f"{max(left, 0):.0f} s of {record.lifetime_s:.0f} s left"
    if now - max(record.last_refresh_at, record.authorized_at) >= settings.refresh_max_age_s:
        return "max age reached"
    return None


def _decide(record: TokenRecord, settings: Settings, now: float, *, force: bool,
            seen_generation: int | None, first_generation: int) -> RefreshOutcome | None:
    """None when a refresh must happen now, else the outcome explaining why not."""
    gen = record.generation
    if record.state == STATE_REAUTH_REQUIRED:
        return RefreshOutcome("reauth_required", gen, record.state_reason)
    if seen_generation is not None:
        return None if gen <= seen_generation else RefreshOutcome("already_refreshed", gen)
    if force:
        return None if gen == first_generation else RefreshOutcome("already_refreshed", gen)
    if record.state == STATE_REFRESH_FAILING and now < record.next_attempt_at:
        wait = record.next_attempt_at - now
        return RefreshOutcome("backing_off", gen, f"next attempt in {wait:.0f} s")
    if refresh_reason(record, settings, now) is None:
        return RefreshOutcome("not_needed" if gen == first_generation else "already_refreshed", gen)
    return None


def refresh(
    settings: Settings,
    redis: Redis,
    *,
    force: bool = False,
    seen_generation: int | None = None,
    lock_wait_s: float | None = None,
    client: OAuthClient | None = None,
    jwks: JwksCache | None = None,
    clock: Callable[[], float] = time.time,
) -> RefreshOutcome:
    """Refresh if needed (or forced); safe to call from any number of processes at once."""
    store = TokenStore(settings, redis)
    record = store.read()
    if record is None:
        return RefreshOutcome("not_authorized", 0)
    first = record.generation

    def decide(current: TokenRecord) -> RefreshOutcome | None:
        return _decide(current, settings, clock(), force=force,
                       seen_generation=seen_generation, first_generation=first)

    early = decide(record)
    if early is not None:
        return early
    wait = settings.http_timeout_s if lock_wait_s is None else lock_wait_s
    try:
        with refresh_lock(settings, redis, wait_s=wait) as lock:
            record = store.read()  # someone may have refreshed while we waited
            if record is None:
                return RefreshOutcome("not_authorized", 0)
            early = decide(record)
            if early is not None:
                return early
            pass_token_endpoint_gate(settings, redis)
            if not still_owned(lock):
                return RefreshOutcome("busy", record.generation, "refresh lock lost")
            return _refresh_locked(settings, redis, store, record,
                                   client or OAuthClient(settings),
                                   jwks or jwks_cache_for(settings), clock)
    except RefreshLockTimeoutError as exc:
        return RefreshOutcome("busy", first, str(exc))


def _refresh_locked(
    settings: Settings, redis: Redis, store: TokenStore, record: TokenRecord,
    client: OAuthClient, jwks: JwksCache, clock: Callable[[], float],
) -> RefreshOutcome:
    gen = record.generation
    try:
        jwks.warm()  # a JWKS outage must fail *before* a rotating refresh token is spent
        store.update(gen, attempt_started_at=clock())
        answer = client.refresh(record.refresh_token)
    except OAuthTransientError as exc:
        return _failing(settings, store, record, exc, clock())
    except OAuthServerError as exc:
        if exc.error == "invalid_grant":
            return _invalid_grant(settings, redis, store, record)
        return _failing(settings, store, record, exc, clock())
    # The answer is in hand: from here the new pair must reach Redis before anything else.
    try:
        claims = verify_access_token(settings, answer.access_token, cache=jwks)
    except TokenVerificationError as exc:
        reason = f"the refreshed access token failed verification and was not stored ({exc})"
        return _reauth(settings, redis, store, record, reason)
    now = clock()
    new = build_record(record, answer, claims, refreshed=True, now=now)
    try:
        written = store.replace(gen, new)
    except StaleWriteError as exc:
        log.error("token record changed under the refresh lock (generation %s)",
                  exc.current_generation)
        return RefreshOutcome("already_refreshed", exc.current_generation, "lost a race")
    redis.delete(Keys(settings.key_prefix, settings.account).token_refresh_requested)
    log.info(
        "token refreshed: generation %s, expires in %.0f s, refresh token %s (%s)",
        written, new.expires_at - now, redact_token(new.refresh_token), new.refresh_token_mode,
        extra={"event": "token_refreshed", "generation": written},
    )
    return RefreshOutcome("refreshed", written, new.refresh_token_mode)


def _failing(settings: Settings, store: TokenStore, record: TokenRecord,
             exc: OAuthServerError, now: float) -> RefreshOutcome:
    failures = record.failure_count + 1
    wait = backoff_s(failures, exc.retry_after_s)
    reason = f"{exc.error} (attempt {failures}): {exc}"
    try:
        store.update(record.generation, state=STATE_REFRESH_FAILING, state_reason=reason,
                     failure_count=failures, next_attempt_at=now + wait, attempt_started_at=0)
    except StaleWriteError:
        return RefreshOutcome("already_refreshed", store.generation())
    log.warning("token refresh failed, retrying in %.0f s: %s", wait, reason,
                extra={"event": "token_refresh_failed"})
    return RefreshOutcome("failing", record.generation, reason)


def _invalid_grant(settings: Settings, redis: Redis, store: TokenStore,
                   record: TokenRecord) -> RefreshOutcome:
    latest = store.read()  # another process may have won the race: that is not an incident
    if latest is not None and latest.generation != record.generation:
        return RefreshOutcome("already_refreshed", latest.generation)
    reason = "invalid_grant: the refresh token was rejected and no newer one is stored"
    if record.attempt_started_at:
        reason += (
            "; an earlier refresh got an answer but the process stopped before storing it, and "
            "the server accepts no previous refresh token (no grace window)"
        )
    return _reauth(settings, redis, store, record, reason)


def _reauth(settings: Settings, redis: Redis, store: TokenStore, record: TokenRecord,
            reason: str) -> RefreshOutcome:
    try:
        store.update(record.generation, state=STATE_REAUTH_REQUIRED, state_reason=reason,
                     attempt_started_at=0)
    except StaleWriteError:
        return RefreshOutcome("already_refreshed", store.generation())
    alerts.raise_alert(settings, redis, reason=reason, generation=record.generation)
    return RefreshOutcome("reauth_required", record.generation, reason)
