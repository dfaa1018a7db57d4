"""The token API delivery code uses: Redis reads only, never the token endpoint.

Delivery takes its token from `usable_access_token`, which never hands out one known to be
expired: it asks for the refresh (and, for tokens too short-lived for the beat, asks early) and
waits for the new generation without spending an API request. A worker that still gets a 401
calls `request_refresh`; the one locked refresher (task `leadsync.refresh_token` on queue
`leadsync-control`) does the rest.

Reading the record costs an HGETALL and, with LEADSYNC_TOKEN_KEY, a decryption; it changes only
with a new pair or its state. So each process keeps the last record it opened with the stored
token field and when it last found it stored (`TokenStore.kept`: the Account shares one store
per process; its own writes drop it). While that was FRESH_S ago or less and the token is not
expiring, it stands for Redis: a lead's start batch leaves the probe out and the check before
each request reads nothing. Otherwise the batch probes those two fields (`probe_in`), or the
check probes them, and the kept record is reused while they are unchanged. So a rotated token or
a changed state (`reauth_required`, deleted, another key) is seen within FRESH_S, and with one
probe per FRESH_S per busy process rather than one per lead; a 401 before that re-reads.
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
from worker.auth.token_store import Kept, TokenStore
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
FRESH_S = 0.5  # a record found stored this recently stands for a probe (batch, each request)
# What identifies the record: the access token as stored (with a key, a ciphertext made afresh
# by every write; a generation alone starts at 1 again after a delete) and the state.
PROBED = ("access_token", "state")


def standing(store: TokenStore) -> Kept | None:
    """The kept record if it may stand for a probe now: found stored FRESH_S ago or less, and
    its token not expiring (more than EXPIRY_SKEW_S left). A short-lived token inside its
    refresh lead may stand: each use asks for the refresh, which reads the whole record."""
    kept = store.kept
    if (kept is None or time.monotonic() - kept.at > FRESH_S
            or kept.record.expires_at - time.time() <= EXPIRY_SKEW_S):
        return None
    return kept


def probe_in(store: TokenStore, batch: Batch) -> bool:
    """Add the probe (stored token and state) to `batch` unless the kept record stands for it;
    True when added (hand its reply to `usable_from_probe`)."""
    if standing(store) is not None:
        return False
    batch.pipe.hmget(store.key, *PROBED)
    return True


def _from_probe(store: TokenStore, reply: Sequence[Any], at: float) -> TokenRecord | None:
    """The record a probe sent at `at` names: the one this process opened if it is still the
    stored one, else read (and kept, unless found in clear under a key: that is reported per
    read)."""
    stored, state = reply
    kept = store.kept
    if (stored is not None and kept is not None and kept.stored == text(stored)
            and kept.record.state == (text(state) if state is not None else STATE_OK)):
        store.keep(kept._replace(at=at))
        return kept.record
    return store.read_checked()[0]


def _probe(store: TokenStore) -> TokenRecord | None:
    at = time.monotonic()
    try:
        reply = store.redis.hmget(store.key, list(PROBED))
    except RedisError as exc:
        raise RedisUnavailableError(f"cannot read the token record: {exc}") from None
    return _from_probe(store, reply, at)


def _known(store: TokenStore) -> TokenRecord | None:
    """The stored record as of FRESH_S ago or later: kept, or probed now."""
    kept = standing(store)
    return kept.record if kept is not None else _probe(store)


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


def usable_from_probe(store: TokenStore, reply: Sequence[Any] | None, wait_s: float,
                      *, probed_at: float) -> AccessToken:
    """`usable_access_token`, starting from a `probe_in` reply sent at `probed_at`
    (time.monotonic()), or None when the batch left the probe out: no read when this process
    has the record open and found it stored FRESH_S ago or less; else a new probe."""
    if reply is not None and time.monotonic() - probed_at <= FRESH_S:
        record = _from_probe(store, reply, probed_at)
    else:
        record = _known(store)
    return _usable(store, _checked(record), wait_s)


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
        record = _checked(_known(store))  # no read while the kept record stands
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
