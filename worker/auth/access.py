"""The token API delivery code uses: Redis reads only, never the token endpoint.

Delivery takes its token from `usable_access_token`, which never hands out one known to be
expired: it asks for the refresh (and, for tokens too short-lived for the beat, asks early) and
waits for the new generation without spending an API request. A worker that still gets a 401
calls `request_refresh`; the one locked refresher (task `leadsync.refresh_token` on queue
`leadsync-control`) does the rest.

Reading the record costs an HGETALL and, with LEADSYNC_TOKEN_KEY, a decryption; it changes only
with a new pair or its state. So delivery reads just those two fields, in the batch that starts
a lead (`probe_in`), and each process keeps the last record it opened with the stored token
field (`TokenStore.kept`: the Account shares one store per process) and reuses it while that
field and the state are unchanged. The check right before a request skips Redis when that probe is
a moment old (FRESH_S) and the token is not expiring; otherwise it probes again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from worker.auth.timing import EXPIRY_SKEW_S, beat_can_serve, refresh_lead_s
from worker.auth.token_record import (
    STATE_NOT_AUTHORIZED,
    STATE_OK,
    STATE_REAUTH_REQUIRED,
    STATE_TOKEN_KEY_INVALID,
    TokenRecord,
)
from worker.auth.token_store import TokenStore
from worker.base.errors import (
    NotAuthorizedError,
    ReauthRequiredError,
    RedisUnavailableError,
    RefreshLockTimeoutError,
    TokenKeyError,
)
from worker.base.names import CONTROL_QUEUE, REFRESH_TOKEN
from worker.base.redis_text import text
from worker.leads.wire import encode_task_message
from worker.lua import Batch, script


@dataclass(frozen=True)
class AccessToken:
    value: str = field(repr=False)  # the bearer JWT
    generation: int  # increases by one with every stored refresh
    expires_at: float  # epoch seconds, from the JWT `exp`


POLL_S = 0.05  # how often a worker waiting for a refreshed token re-reads Redis
FRESH_S = 0.5  # a probe this recent stands for the check before the next request
# What identifies the record: the access token as stored (with a key, a ciphertext made afresh
# by every write; a generation alone starts at 1 again after a delete) and the state.
PROBED = ("access_token", "state")


def probe_in(store: TokenStore, batch: Batch) -> None:
    """Add the probe (stored token and state) to `batch`; hand its reply to `usable_from_probe`."""
    batch.pipe.hmget(store.key, *PROBED)


def _from_probe(store: TokenStore, reply: Sequence[Any]) -> TokenRecord | None:
    """The record the probe names: the one this process opened if it is still the stored one,
    else read (and kept, unless found in clear under a key: that is reported per read)."""
    stored, state = reply
    kept = store.kept
    if (stored is not None and kept is not None and kept[0] == text(stored)
            and kept[1].state == (text(state) if state is not None else STATE_OK)):
        return kept[1]
    record, at_rest = store.read_checked()
    store.kept = (at_rest, record) if record is not None and at_rest is not None else None
    return record


def _probe(store: TokenStore) -> TokenRecord | None:
    try:
        reply = store.redis.hmget(store.key, list(PROBED))
    except RedisError as exc:
        raise RedisUnavailableError(f"cannot read the token record: {exc}") from None
    return _from_probe(store, reply)


def _sendable(store: TokenStore) -> TokenRecord:
    """The stored record, if a token may be sent at all; raises NotAuthorized/ReauthRequired."""
    return _checked(store.read())


def _checked(record: TokenRecord | None) -> TokenRecord:
    if record is None or not record.access_token:
        raise NotAuthorizedError(
            "no Constant Contact tokens stored: run `leadsync auth device` (or `auth login`)"
        )
    if record.state == STATE_REAUTH_REQUIRED:
        raise ReauthRequiredError(
            "the refresh token was rejected; re-authorize with `leadsync auth device` "
            f"({record.state_reason or 'invalid_grant'})"
        )
    return record


def current_access_token(store: TokenStore) -> AccessToken:
    """The shared access token; raises NotAuthorizedError or ReauthRequiredError."""
    record = _sendable(store)
    return AccessToken(record.access_token, record.generation, record.expires_at)


def newer_token(store: TokenStore, refused_generation: int,
                wait_s: float) -> AccessToken | None:
    """After a 401 (and `request_refresh`): a token newer than the refused one, polled for up
    to `wait_s`; None if none came."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        token = current_access_token(store)
        if token.generation > refused_generation:
            return token
        time.sleep(0.1)
    return None


def usable_access_token(store: TokenStore, wait_s: float) -> AccessToken:
    """A token not known to be expired: more than EXPIRY_SKEW_S of it is left.

    A short-lived token (beat ticks cannot refresh it in time, worker/auth/timing.py) inside its
    refresh lead gets a refresh request, once per generation fleet-wide. An expiring one gets
    the request too, and the caller waits up to `wait_s` for the new generation, polling Redis;
    if none comes, RefreshLockTimeoutError: a wait that spends no retry and no API request.
    """
    return _usable(store, _sendable(store), wait_s)


def usable_from_probe(store: TokenStore, reply: Sequence[Any], wait_s: float,
                      *, probed_at: float) -> AccessToken:
    """`usable_access_token`, starting from a `probe_in` reply taken at `probed_at`
    (time.monotonic()): no read when this process has that record open already, and a
    new probe when that one is more than FRESH_S old."""
    if time.monotonic() - probed_at > FRESH_S:
        record, probed_at = _probe(store), time.monotonic()
    else:
        record = _from_probe(store, reply)
    token = _usable(store, _checked(record), wait_s)
    store.probed.token = (token.value, probed_at)
    return token


def _usable(store: TokenStore, record: TokenRecord, wait_s: float) -> AccessToken:
    settings = store.settings
    left = record.expires_at - time.time()
    lifetime = record.lifetime_s
    early = not beat_can_serve(settings, lifetime) and left < refresh_lead_s(settings, lifetime)
    if early or left <= EXPIRY_SKEW_S:
        request_refresh(store, record.generation)
    deadline = time.monotonic() + wait_s
    while record.expires_at - time.time() <= EXPIRY_SKEW_S:
        if time.monotonic() >= deadline:
            raise RefreshLockTimeoutError(
                f"the access token expired and no refreshed one arrived within {wait_s:g} s "
                "(the refresh was requested; trying again shortly)"
            )
        time.sleep(POLL_S)
        record = _sendable(store)
    return AccessToken(record.access_token, record.generation, record.expires_at)


def token_checker(store: TokenStore, wait_s: float) -> Callable[[str], str]:
    """For `ContactsClient(token_check=...)`: called right before each request, after the
    limiter's wait, with the token about to be sent; answers the token to send instead.

    A newer stored token replaces it; an expiring one (the current one, EXPIRY_SKEW_S or less
    left) goes through `usable_access_token`, which waits for the refresh or raises the
    no-budget RefreshLockTimeoutError: a token known to be expired is never sent.
    """

    def check(value: str) -> str:
        probed = getattr(store.probed, "token", None)
        store.probed.token = None  # stands for one check only: the lead's first request
        if probed is not None and probed[0] == value and time.monotonic() - probed[1] <= FRESH_S:
            kept = store.kept
            if (kept is not None and kept[1].access_token == value
                    and kept[1].expires_at - time.time() > EXPIRY_SKEW_S):
                return value
        record = _checked(_probe(store))
        if record.expires_at - time.time() > EXPIRY_SKEW_S:
            return record.access_token  # the one given, or a newer one (later exp)
        return usable_access_token(store, wait_s).value

    return check


def sending_possible(store: TokenStore) -> bool:
    """False when nothing is stored, a person must re-authorize, or the key cannot open it."""
    try:
        record = store.read()
    except TokenKeyError:
        return False
    return bool(record and record.access_token and record.state != STATE_REAUTH_REQUIRED)


def token_state(store: TokenStore) -> str:
    """"ok" | "refresh_failing" | "reauth_required" | "not_authorized" | "token_key_invalid"."""
    try:
        record = store.read()
    except TokenKeyError:
        return STATE_TOKEN_KEY_INVALID
    return state_of(record)


def state_of(record: TokenRecord | None) -> str:
    """`token_state` of a record already read (a readable one, or None when nothing is stored)."""
    if record is None or (not record.access_token and record.state != STATE_REAUTH_REQUIRED):
        return STATE_NOT_AUTHORIZED
    return record.state


def request_refresh(store: TokenStore, seen_generation: int) -> None:
    """A token of `seen_generation` got a 401: ask the refresher once, fleet-wide."""
    record = store.read()
    if record is not None and record.generation > seen_generation:
        return  # a newer token is already stored; the caller just needs to re-read
    ttl_ms = int(store.settings.refresh_lock_ttl_s * 1000)
    try:
        send = script("refresh_request").run(
            store.redis, [store.scope.keys.token_refresh_requested], [seen_generation, ttl_ms])
    except RedisError as exc:
        raise RedisUnavailableError(f"cannot request a token refresh: {exc}") from None
    if int(send):
        send_refresh_task(store.redis, seen_generation)


def send_refresh_task(redis: Redis, seen_generation: int) -> None:
    """LPUSH the `leadsync.refresh_token` message onto the control queue: no Celery app needed.

    The message is the plain-JSON protocol-2 one worker.leads.wire builds for leads, so this layer
    never imports worker.celery (the app is built above it, from the same settings).
    """
    kwargs = {"seen_generation": seen_generation}
    message = encode_task_message(REFRESH_TOKEN, CONTROL_QUEUE, kwargs=kwargs,
                                  kwargsrepr=repr(kwargs))  # a number: nothing to redact
    try:
        redis.lpush(CONTROL_QUEUE, message)
    except RedisError as exc:
        raise RedisUnavailableError(f"cannot request a token refresh: {exc}") from None
