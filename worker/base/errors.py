"""The one exception tree of leadsync; handler data lives in attributes, never only in text.

LeadsyncError
├── ConfigError (also ValueError)      bad setting, raised at start-up
│   └── TokenKeyError                  LEADSYNC_TOKEN_KEY cannot open the stored tokens: park
├── RedisUnavailableError              Redis cannot be reached
├── InvalidLeadError                   the lead itself is wrong: never retried
├── AuthError                          token family
│   ├── NotAuthorizedError             nothing stored: run `leadsync auth device`
│   ├── ReauthRequiredError            refresh token rejected (invalid_grant): re-authorize
│   ├── TokenVerificationError         a token failed JWT verification: never stored
│   ├── OAuthServerError               the authorization server answered with an OAuth error
│   │   └── OAuthTransientError        token endpoint unreachable, 5xx or 429: retry with backoff
│   └── RefreshLockTimeoutError        another process holds the refresh lock: transient
├── RateLimitedLocallyError            the fleet limiter said "not now" (retry_after_s)
├── QuotaExhaustedError                daily quota used up: park until 00:00 UTC (resume_at)
├── EmailBusyError                     another worker is writing this email's contact now
└── ContactsAPIError                   Constant Contact answered with an error (status_code)
    ├── TransientAPIError              5xx, timeouts, connection errors (retry_after_s)
    │   ├── ConflictError              409: email exists (POST) or concurrent modification
    │   └── ThrottledError             429 throttled
    ├── UnauthorizedError              401: ask for a refresh, retry without spending budget
    ├── QuotaExceededError             429 quota_exceeded
    └── PermanentAPIError              400/403/404/415: dead letter with the server's message

Messages never carry a token, a secret, an email address or a phone number in clear.
"""

from __future__ import annotations

from datetime import datetime


class LeadsyncError(Exception):
    """Root of every error leadsync raises on purpose."""


class ConfigError(LeadsyncError, ValueError):
    """A setting is missing or invalid; the message names the variable."""


class TokenKeyError(ConfigError):
    """LEADSYNC_TOKEN_KEY cannot open the stored tokens (wrong key, not a Fernet key, or none
    while they are encrypted): a token state; leads park until the key is fixed."""


class RedisUnavailableError(LeadsyncError):
    """Redis could not be reached or answered with an error."""


class InvalidLeadError(LeadsyncError):
    """The lead message is malformed or breaks a limit; retrying cannot help."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class AuthError(LeadsyncError):
    """Something about the OAuth tokens prevents sending."""


class NotAuthorizedError(AuthError):
    """No tokens are stored yet."""


class ReauthRequiredError(AuthError):
    """The refresh token was rejected; a person must run `leadsync auth device|login|import`."""


class TokenVerificationError(AuthError):
    """A token failed signature or claim checks; it is never stored."""


class OAuthServerError(AuthError):
    """The authorization server answered with an OAuth error object."""

    def __init__(
        self,
        message: str,
        *,
        error: str,
        status_code: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.error = error
        self.status_code = status_code
        self.retry_after_s = retry_after_s


class OAuthTransientError(OAuthServerError):
    """The authorization server could not answer now (timeout, 5xx, 429); worth retrying."""


class RefreshLockTimeoutError(AuthError):
    """Another process is refreshing; try again shortly."""


class RateLimitedLocallyError(LeadsyncError):
    """The shared limiter has no slot now; retry after `retry_after_s`."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class QuotaExhaustedError(LeadsyncError):
    """Today's request quota is spent; leads park until `resume_at` (00:00 UTC)."""

    def __init__(self, message: str, *, resume_at: datetime) -> None:
        super().__init__(message)
        self.resume_at = resume_at


class EmailBusyError(LeadsyncError):
    """Writes are serialized per email; another worker holds this one (retry_after_s)."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ContactsAPIError(LeadsyncError):
    """Constant Contact answered with an error status."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_key: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error_key = error_key
        self.retry_after_s = retry_after_s


class TransientAPIError(ContactsAPIError):
    """Worth retrying with backoff: 5xx, timeouts, connection errors, concurrent modification."""


class ConflictError(TransientAPIError):
    """409: the email already exists (POST /contacts) or another write is modifying it."""


class ThrottledError(TransientAPIError):
    """429 `throttled`: over the per-second limit; wait on the shared limiter."""


class UnauthorizedError(ContactsAPIError):
    """401: the access token was refused."""


class QuotaExceededError(ContactsAPIError):
    """429 `quota_exceeded`: no more requests until 00:00 UTC."""


class PermanentAPIError(ContactsAPIError):
    """A 4xx that retrying cannot fix."""
