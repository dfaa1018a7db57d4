"""The stored token record: one Redis hash per Constant Contact account.

Plain data plus its (de)serialisation; encryption and compare-and-set live in `token_store`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

STATE_OK = "ok"
STATE_REFRESH_FAILING = "refresh_failing"
STATE_REAUTH_REQUIRED = "reauth_required"
STATE_NOT_AUTHORIZED = "not_authorized"
STATE_TOKEN_KEY_INVALID = "token_key_invalid"  # not stored: this process's key cannot open it

MODE_UNKNOWN = "unknown"
MODE_ROTATING = "rotating"
MODE_LONG_LIVED = "long_lived"

_FLOATS = {"expires_at", "issued_at", "authorized_at", "last_refresh_at", "next_attempt_at",
           "attempt_started_at", "interrupted_at"}
_INTS = {"generation", "failure_count", "refresh_count"}
SECRET_FIELDS = ("access_token", "refresh_token")
# Encrypted at rest with LEADSYNC_TOKEN_KEY: the tokens and the account's email (`sub`).
SEALED_FIELDS = (*SECRET_FIELDS, "sub")


@dataclass(frozen=True)
class TokenRecord:
    """Everything known about the account's tokens; secrets are hidden from repr."""

    access_token: str = field(default="", repr=False)
    refresh_token: str = field(default="", repr=False)
    generation: int = 0
    expires_at: float = 0.0  # JWT `exp` of the access token (epoch s)
    issued_at: float = 0.0  # JWT `iat` (or the time we received it)
    scopes: str = ""
    sub: str = ""
    platform_user_id: str = ""
    state: str = STATE_OK
    state_reason: str = ""
    refresh_token_mode: str = MODE_UNKNOWN
    authorized_at: float = 0.0
    last_refresh_at: float = 0.0
    refresh_count: int = 0
    failure_count: int = 0
    next_attempt_at: float = 0.0
    attempt_started_at: float = 0.0  # set just before a token request, cleared by its write
    interrupted_at: float = 0.0  # start of a refresh whose answer was lost; cleared by a write

    @property
    def lifetime_s(self) -> float:
        return max(self.expires_at - self.issued_at, 0.0)

    def with_(self, **changes: Any) -> TokenRecord:
        return replace(self, **changes)

    def to_hash(self) -> dict[str, str]:
        """Every field as a string, ready for HSET (secrets still in clear: store encrypts)."""
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> TokenRecord:
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in raw:
                continue
            text = raw[f.name]
            if f.name in _FLOATS:
                values[f.name] = float(text or 0)
            elif f.name in _INTS:
                values[f.name] = int(text or 0)
            else:
                values[f.name] = text
        return cls(**values)
