"""Every way a delivery attempt can end, classified in one place (retry policy as data).

`classify(exc)` turns what went wrong into a `Decision`: what to do with the lead and whether the
try counts against its failure budget. Waiting (for the shared limiter, for a refreshed token,
for tomorrow's quota, for a person to re-authorize) never spends that budget; only failures that
retrying might fix do, and when the budget is gone the lead is dead-lettered with its reason:
`spend_try` says which, for a single lead's try and for a bulk import's lead sent back alike.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from redis.exceptions import RedisError

from worker.base.backoff import backoff_s
from worker.base.errors import (
    AuthError,
    ConfigError,
    ConflictError,
    ContactsAPIError,
    EmailBusyError,
    InvalidLeadError,
    NotAuthorizedError,
    OAuthTransientError,
    PermanentAPIError,
    QuotaExceededError,
    QuotaExhaustedError,
    RateLimitedLocallyError,
    ReauthRequiredError,
    RedisUnavailableError,
    RefreshLockTimeoutError,
    ThrottledError,
    TokenKeyError,
    TransientAPIError,
    UnauthorizedError,
)
from worker.base.redaction import scrub


class Action(StrEnum):
    DEAD_LETTER = "dead_letter"  # retrying cannot help
    RETRY = "retry"  # try again after a backoff countdown
    WAIT = "wait"  # try again soon; nothing was wrong with the lead (limiter, lock, Redis)
    REFRESH = "refresh"  # 401: ask for one refresh, then try again with the new token
    PARK_QUOTA = "park_quota"  # daily quota spent: resume at 00:00 UTC
    PARK_REAUTH = "park_reauth"  # a person must re-authorize: resume after `leadsync auth ...`


@dataclass(frozen=True)
class Decision:
    action: Action
    spends_budget: bool
    reason: str  # redacted, safe for logs and dead letters
    reason_code: str  # short and stable: dead letters are filtered by it
    status_code: int | None = None
    retry_after_s: float | None = None


# (exception class, action, spends budget, reason code); the first matching row wins, so
# subclasses come before their bases. A test checks every error leadsync raises has a row.
POLICY: tuple[tuple[type[BaseException], Action, bool, str], ...] = (
    (InvalidLeadError, Action.DEAD_LETTER, False, "invalid_lead"),
    (PermanentAPIError, Action.DEAD_LETTER, False, "rejected"),
    (UnauthorizedError, Action.REFRESH, False, "unauthorized"),
    (QuotaExceededError, Action.PARK_QUOTA, False, "quota"),
    (QuotaExhaustedError, Action.PARK_QUOTA, False, "quota"),
    (ThrottledError, Action.WAIT, False, "throttled"),
    (RateLimitedLocallyError, Action.WAIT, False, "rate_limited"),
    (EmailBusyError, Action.WAIT, False, "email_busy"),
    (ConflictError, Action.RETRY, True, "conflict"),
    (TransientAPIError, Action.RETRY, True, "transient"),
    (ContactsAPIError, Action.RETRY, True, "api_error"),
    (NotAuthorizedError, Action.PARK_REAUTH, False, "reauth"),
    (ReauthRequiredError, Action.PARK_REAUTH, False, "reauth"),
    (RefreshLockTimeoutError, Action.WAIT, False, "refreshing"),
    (OAuthTransientError, Action.WAIT, False, "refreshing"),
    (AuthError, Action.WAIT, False, "token"),
    (RedisUnavailableError, Action.WAIT, False, "redis_unavailable"),
    (RedisError, Action.WAIT, False, "redis_unavailable"),
    # LEADSYNC_TOKEN_KEY cannot open the tokens: park (reason token_key) until it is fixed,
    # instead of retrying every few seconds forever; worker.auth.token_key logs it once.
    (TokenKeyError, Action.PARK_REAUTH, False, "token_key"),
    # Another setting is wrong: no lead is at fault, so none is spent while an operator fixes
    # it; `leadsync status` shows the reason in its last errors.
    (ConfigError, Action.WAIT, False, "config"),
    # A bug or something unforeseen: retried within the budget, then kept as a dead letter.
    (Exception, Action.RETRY, True, "unexpected"),
)


def classify(exc: BaseException) -> Decision:
    """The decision for one failed try."""
    for kind, action, spends, code in POLICY:
        if isinstance(exc, kind):
            status = getattr(exc, "status_code", None)
            detail = scrub(str(exc)) or type(exc).__name__
            if code == "rejected" and status is not None:
                code = f"http_{status}"
            if code == "unexpected":
                detail = f"{type(exc).__name__}: {detail}"
            return Decision(
                action=action,
                spends_budget=spends,
                reason=detail[:500],
                reason_code=code,
                status_code=status,
                retry_after_s=getattr(exc, "retry_after_s", None),
            )
    raise TypeError(f"cannot classify {type(exc).__name__}")  # BaseException outside Exception


RETRIES_EXHAUSTED = "retries_exhausted"  # the dead letters' reason code when the budget is gone


class RetryBudget(Protocol):
    """The settings the budget reads (LEADSYNC_MAX_RETRIES, LEADSYNC_BACKOFF_*)."""

    @property
    def max_retries(self) -> int: ...
    @property
    def backoff_base_s(self) -> float: ...
    @property
    def backoff_max_s(self) -> float: ...


@dataclass(frozen=True)
class SpentTry:
    """Where a lead goes after a failure that spent a try: back through the schedule in
    `wait_s`, or (`exhausted`) to the dead letters with `reason`."""

    exhausted: bool
    wait_s: float
    reason: str


def spend_try(failures: int, reason: str, budget: RetryBudget, *,
              retry_after_s: float | None = None,
              draw: Callable[[float, float], float] = random.uniform) -> SpentTry:
    """`failures` counts this one (the ledger's count_attempt). Past LEADSYNC_MAX_RETRIES the
    lead is a `retries_exhausted` dead letter; otherwise it waits the jittered backoff, or the
    server's Retry-After when that is longer."""
    if failures > budget.max_retries:
        return SpentTry(True, 0.0, f"retries exhausted after {failures} tries: {reason}")
    wait = backoff_s(failures, budget.backoff_base_s, budget.backoff_max_s, draw=draw)
    return SpentTry(False, max(retry_after_s or 0.0, wait), reason)
