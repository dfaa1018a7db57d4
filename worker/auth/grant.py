"""Turn a verified token answer into the stored record (first authorization or refresh).

A new authorization (device, login, import) goes through the refresh lock too, so it never
interleaves with a refresh in flight; it resets the state to ok and closes any alert.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from worker.auth import alerts
from worker.auth.jwt_verify import JwksCache, verify_access_token
from worker.auth.lock import refresh_lock
from worker.auth.oauth_client import TokenResponse
from worker.auth.token_record import (
    MODE_LONG_LIVED,
    MODE_ROTATING,
    MODE_UNKNOWN,
    STATE_OK,
    TokenRecord,
)
from worker.auth.token_store import StaleWriteError, TokenStore
from worker.base.errors import OAuthServerError, TokenKeyError
from worker.base.redaction import redact_token

log = logging.getLogger(__name__)

MISSING_OFFLINE_ACCESS = (
    "the authorization server returned no refresh token: the `offline_access` scope is missing "
    "(check LEADSYNC_SCOPES and the app's settings), so leadsync could not refresh on its own"
)


def build_record(
    previous: TokenRecord | None,
    answer: TokenResponse,
    claims: dict[str, Any],
    *,
    refreshed: bool,
    now: float,
) -> TokenRecord:
    """The record after `answer`; a refresh answer without refresh_token keeps the old one."""
    old_refresh = previous.refresh_token if previous else ""
    new_refresh = answer.refresh_token or old_refresh
    mode = previous.refresh_token_mode if previous else MODE_UNKNOWN
    if refreshed:
        mode = MODE_ROTATING if new_refresh != old_refresh else MODE_LONG_LIVED
    elif not previous or previous.refresh_token != new_refresh:
        mode = MODE_UNKNOWN  # a new grant: nothing known until the first refresh
    scp = claims.get("scp")
    scopes = answer.scope or (" ".join(scp) if isinstance(scp, list) else "") or (
        previous.scopes if previous else ""
    )
    base = previous or TokenRecord()
    return base.with_(
        access_token=answer.access_token,
        refresh_token=new_refresh,
        expires_at=float(claims["exp"]),
        issued_at=float(claims.get("iat") or answer.received_at),
        scopes=scopes,
        sub=str(claims.get("sub") or ""),
        platform_user_id=str(claims.get("platform_user_id") or ""),
        state=STATE_OK,
        state_reason="",
        refresh_token_mode=mode,
        authorized_at=base.authorized_at if refreshed else now,
        last_refresh_at=now if refreshed else base.last_refresh_at,
        refresh_count=base.refresh_count + 1 if refreshed else 0,
        failure_count=0,
        next_attempt_at=0.0,
        attempt_started_at=0.0,
        interrupted_at=0.0,
    )


def store_authorization(store: TokenStore, answer: TokenResponse, *,
                        jwks: JwksCache | None = None) -> TokenRecord:
    """Verify and store the answer of a one-time authorization; state becomes ok."""
    settings = store.settings
    if not answer.refresh_token:
        raise OAuthServerError(MISSING_OFFLINE_ACCESS, error="missing_refresh_token")
    # never store what fails
    claims = verify_access_token(settings, answer.access_token, cache=jwks)
    with refresh_lock(store.scope, wait_s=settings.refresh_lock_ttl_s):
        for _ in range(5):
            previous, expected = _previous(store)
            record = build_record(previous, answer, claims, refreshed=False, now=time.time())
            try:
                generation = store.replace(expected, record)
                break
            except StaleWriteError:
                continue
        else:  # pragma: no cover - five writers racing a held lock
            raise OAuthServerError("token record kept changing; try again", error="conflict")
    store.redis.delete(store.scope.keys.token_refresh_requested)
    alerts.clear_alert(store.scope)
    store.incidents.forget()
    log.info(
        "authorization stored: generation %s, refresh token %s",
        generation,
        redact_token(answer.refresh_token),
    )
    return record.with_(generation=generation)


def store_imported_refresh_token(store: TokenStore, refresh_token: str) -> int:
    """Seed the record with a refresh token obtained elsewhere (no access token yet)."""
    with refresh_lock(store.scope, wait_s=store.settings.refresh_lock_ttl_s):
        _, expected = _previous(store)
        record = TokenRecord(refresh_token=refresh_token, authorized_at=time.time())
        generation = store.replace(expected, record)
    alerts.clear_alert(store.scope)
    store.incidents.forget()
    return generation


def _previous(store: TokenStore) -> tuple[TokenRecord | None, int]:
    """The stored record and its generation; a record this key cannot open (the old key is
    lost) is replaced as if new, which is how a person recovers from a lost key."""
    try:
        previous = store.read()
    except TokenKeyError:
        log.warning("replacing a token record that LEADSYNC_TOKEN_KEY cannot open")
        return None, store.raw_generation()
    return previous, previous.generation if previous else 0
