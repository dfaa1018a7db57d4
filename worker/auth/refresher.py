"""The single refresh path (beat task, 401 requests and `auth refresh` all come here).

Lock, re-read, decide, pass the 1/s gate, mark the attempt (durably, before the request), ask
the token endpoint, verify, and write the new pair (compare-and-set on the generation) before the
lock is released. `invalid_grant` is judged only after a re-read: if nobody stored a newer pair,
a person must re-authorize (state reauth_required + one alert). Anything else is transient:
refresh_failing with a backoff that the next beat honours.

Interrupted refresh: a holder that finishes always clears its marker, so a refresher that takes
the lock and finds `attempt_started_at` still set knows the earlier request may have rotated the
refresh token and its answer was lost (kill -9 between request and write, a timeout). It tries
the same refresh token once, at once, whatever the schedule: a server with a rotation grace
period (Okta offers 0-60 s) answers with a new pair; otherwise `invalid_grant` turns into
reauth_required with the reason "refresh interrupted at <UTC time>, the new token was lost".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from redis import Redis
from redis.exceptions import RedisError

from worker.auth import alerts
from worker.auth.grant import build_record
from worker.auth.jwt_verify import JwksCache, jwks_cache, verify_access_token
from worker.auth.lock import pass_token_endpoint_gate, refresh_lock, still_owned
from worker.auth.oauth_client import OAuthClient
from worker.auth.timing import refresh_lead_s
from worker.auth.token_record import (
    STATE_REAUTH_REQUIRED,
    STATE_REFRESH_FAILING,
    TokenRecord,
)
from worker.auth.token_store import StaleWriteError, TokenStore
from worker.base.backoff import ceiling_s
from worker.base.errors import (
    OAuthServerError,
    OAuthTransientError,
    RefreshLockTimeoutError,
    TokenVerificationError,
)
from worker.base.redaction import redact_token
from worker.base.settings import Settings

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
    """Wait before the next attempt after `failures` transient failures (1, 2, 4 … 300 s): the
    exponential ceiling itself, no jitter (one refresher, nobody to spread out), or longer
    when the server said so."""
    return max(ceiling_s(failures, 1.0, BACKOFF_CAP_S), retry_after_s or 0.0)


# What the token endpoint may have done with a request whose answer never arrived.
ANSWER_MAYBE_LOST = frozenset({"timeout", "connection_error"})


def utc_text(when: float) -> str:
    """ISO 8601 with a T: the log scrubber would take "2026-11-30 02:19" for a phone number."""
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def interrupted_reason(started_at: float) -> str:
    return f"refresh interrupted at {utc_text(started_at)}, the new token was lost"


def refresh_reason(record: TokenRecord, settings: Settings, now: float) -> str | None:
    """Why the pair should be refreshed now, or None."""
    if not record.access_token:
        return "no access token yet"
    left = record.expires_at - now
    if left < refresh_lead_s(settings, record.lifetime_s) or left <= 0:
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
    if record.attempt_started_at:
        return None  # a refresh is under way or was interrupted: the lock tells which
    if seen_generation is not None:
        return None if gen <= seen_generation else RefreshOutcome("already_refreshed", gen)
    if force:
        return None if gen == first_generation else RefreshOutcome("already_refreshed", gen)
    if record.state == STATE_REFRESH_FAILING and now < record.next_attempt_at:
        wait = record.next_attempt_at - now
        return RefreshOutcome("backing_off", gen, f"next attempt in {wait:.0f} s")
    if record.interrupted_at:
        return None  # an answer may be lost: retry while a grace period may still run
    if refresh_reason(record, settings, now) is None:
        return RefreshOutcome("not_needed" if gen == first_generation else "already_refreshed", gen)
    return None


def refresh(
    store: TokenStore,
    *,
    force: bool = False,
    seen_generation: int | None = None,
    lock_wait_s: float | None = None,
    client: OAuthClient | None = None,
    jwks: JwksCache | None = None,
    clock: Callable[[], float] = time.time,
) -> RefreshOutcome:
    """Refresh if needed (or forced); safe to call from any number of processes at once."""
    settings = store.settings
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
        with refresh_lock(store.scope, wait_s=wait) as lock:
            record = store.read()  # someone may have refreshed while we waited
            if record is None:
                return RefreshOutcome("not_authorized", 0)
            early = decide(record)
            if early is not None:
                return early
            if record.attempt_started_at:  # its holder is gone: it never finished
                log.warning("a refresh started at %s never stored its answer; trying the same "
                            "refresh token once (works where the server has a rotation grace "
                            "period)", utc_text(record.attempt_started_at),
                            extra={"event": "token_refresh_interrupted"})
                record = record.with_(
                    interrupted_at=record.interrupted_at or record.attempt_started_at)
            keys = jwks or jwks_cache(settings)
            try:
                keys.warm()  # a JWKS outage must fail *before* a rotating refresh token is spent
            except OAuthServerError as exc:
                return _failing(store, record, exc, clock())
            pass_token_endpoint_gate(store.scope)  # last before the request: exact spacing
            if not still_owned(lock):
                return RefreshOutcome("busy", record.generation, "refresh lock lost")
            return _refresh_locked(store, record, client or OAuthClient(settings), keys, clock)
    except RefreshLockTimeoutError as exc:
        return RefreshOutcome("busy", first, str(exc))


def _refresh_locked(
    store: TokenStore, record: TokenRecord, client: OAuthClient, jwks: JwksCache,
    clock: Callable[[], float],
) -> RefreshOutcome:
    settings, redis = store.settings, store.redis
    gen = record.generation
    started = clock()
    try:
        store.update(gen, attempt_started_at=started, interrupted_at=record.interrupted_at)
        _wait_durable(redis)
        answer = client.refresh(record.refresh_token)
    except StaleWriteError as exc:  # a new pair arrived between our read and the marker
        return RefreshOutcome("already_refreshed", exc.current_generation)
    except OAuthTransientError as exc:
        if exc.error in ANSWER_MAYBE_LOST:  # it may have rotated the token: keep the trace
            record = record.with_(interrupted_at=record.interrupted_at or started)
        return _failing(store, record, exc, clock())
    except OAuthServerError as exc:
        if exc.error == "invalid_grant":
            return _invalid_grant(store, record)
        return _failing(store, record, exc, clock())
    # The answer is in hand: from here the new pair must reach Redis before anything else.
    try:
        claims = verify_access_token(settings, answer.access_token, cache=jwks)
    except TokenVerificationError as exc:
        reason = f"the refreshed access token failed verification and was not stored ({exc})"
        return _reauth(store, record, reason)
    now = clock()
    new = build_record(record, answer, claims, refreshed=True, now=now)
    try:
        written = store.replace(gen, new)
    except StaleWriteError as exc:
        log.error("token record changed under the refresh lock (generation %s)",
                  exc.current_generation)
        return RefreshOutcome("already_refreshed", exc.current_generation, "lost a race")
    redis.delete(store.scope.keys.token_refresh_requested)
    if record.interrupted_at:
        log.warning("recovered the refresh interrupted at %s: the server still accepted the "
                    "previous refresh token (rotation grace period)",
                    utc_text(record.interrupted_at), extra={"event": "token_refresh_recovered"})
    log.info(
        "token refreshed: generation %s, expires in %.0f s, refresh token %s (%s)",
        written, new.expires_at - now, redact_token(new.refresh_token), new.refresh_token_mode,
        extra={"event": "token_refreshed", "generation": written},
    )
    return RefreshOutcome("refreshed", written, new.refresh_token_mode)


def _failing(store: TokenStore, record: TokenRecord, exc: OAuthServerError,
             now: float) -> RefreshOutcome:
    failures = record.failure_count + 1
    wait = backoff_s(failures, exc.retry_after_s)
    reason = f"{exc.error} (attempt {failures}): {exc}"
    try:
        store.update(record.generation, state=STATE_REFRESH_FAILING, state_reason=reason,
                     failure_count=failures, next_attempt_at=now + wait, attempt_started_at=0,
                     interrupted_at=record.interrupted_at)
    except StaleWriteError:
        return RefreshOutcome("already_refreshed", store.generation())
    log.warning("token refresh failed, retrying in %.0f s: %s", wait, reason,
                extra={"event": "token_refresh_failed"})
    return RefreshOutcome("failing", record.generation, reason)


def _invalid_grant(store: TokenStore, record: TokenRecord) -> RefreshOutcome:
    latest = store.read()  # another process may have won the race: that is not an incident
    if latest is not None and latest.generation != record.generation:
        return RefreshOutcome("already_refreshed", latest.generation)
    if record.interrupted_at:
        reason = (f"{interrupted_reason(record.interrupted_at)} (the server took the refresh "
                  "token again no more: no rotation grace period, or it ran out); re-authorize "
                  "with `leadsync auth device`")
    else:
        reason = "invalid_grant: the refresh token was rejected and no newer one is stored"
    return _reauth(store, record, reason)


def _wait_durable(redis: Redis) -> None:
    """Make the in-flight marker survive a Redis crash before the request goes out.

    Redis >= 7.2 with AOF on: WAITAOF until the write is fsynced (at most 1 s). Older servers or
    no AOF: the marker is as durable as the server's persistence (`appendfsync everysec` may
    lose the last second; `leadsync health` names a Redis without persistence).
    """
    try:
        redis.execute_command("WAITAOF", 1, 0, 1000)  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
    except RedisError:
        return  # unknown command (< 7.2) or AOF off: nothing more to wait for


def _reauth(store: TokenStore, record: TokenRecord, reason: str) -> RefreshOutcome:
    try:
        store.update(record.generation, state=STATE_REAUTH_REQUIRED, state_reason=reason,
                     attempt_started_at=0)
    except StaleWriteError:
        return RefreshOutcome("already_refreshed", store.generation())
    alerts.raise_alert(store.scope, reason=reason, generation=record.generation)
    return RefreshOutcome("reauth_required", record.generation, reason)
