"""What one sandbox run is configured with; defaults are Constant Contact's documented values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from worker.base.settings import CC_ISSUER

CC_AUDIENCE = "https://api.cc.email/v3"
DEFAULT_REDIRECT_URI = "http://127.0.0.1:8765/callback"
DAY_S = 86_400.0
MAX_GRACE_S = 60.0  # Okta offers a rotation grace period of 0 to 60 seconds


@dataclass
class SandboxConfig:
    """Options of `leadsync sandbox`; 0 turns a limit off. Units are in the names."""

    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port chosen by the OS (the CLI defaults to 8911)
    client_id: str = "leadsync-sandbox"
    client_secret: str = "sandbox-secret"
    redirect_uris: tuple[str, ...] = (DEFAULT_REDIRECT_URI,)
    # RFC 8252 7.3: native apps listen on an ephemeral loopback port, so a registered loopback
    # URI also matches the same scheme, host and path on any port.
    loopback_any_port: bool = True

    refresh_tokens: Literal["rotating", "long-lived"] = "rotating"
    # Okta's "grace period for token rotation" (0-60 s): how long the refresh token just rotated
    # out still works. Using it inside the window answers with a new pair (see tokens.py).
    refresh_grace_s: float = 0.0
    access_token_lifetime_s: float = DAY_S
    refresh_token_lifetime_s: float = 180 * DAY_S
    revoke_access_on_refresh: bool = False  # fact 6: Okta keeps old JWTs valid until exp
    code_lifetime_s: float = 300.0

    token_rate_limit_per_s: float = 1.0
    rate_limit_per_s: float = 4.0
    rate_limit_window: Literal["sliding", "fixed"] = "sliding"
    daily_quota: int = 10_000

    auto_approve: bool = False
    device_interval_s: float = 5.0
    device_expires_in_s: float = 600.0
    confirmed_opt_in: bool = False

    # Fault injection (changeable at run time through /_sandbox/faults).
    fail_rate: float = 0.0  # share of 500/503 answers
    latency_ms: float = 0.0
    drop_rate: float = 0.0  # share of connections closed without an answer
    timeout_rate: float = 0.0  # share of requests carried out but answered too late
    conflict_window_ms: float = 0.0  # sign_up_form 409 when writes to one contact overlap

    activity_step_s: float = 0.2  # time an import spends initialized, then processing
    max_queued_activities: int = 1_000
    max_import_contacts: int = 40_000
    max_import_bytes: int = 4 * 1024 * 1024
    # The first N imports end `failed` (no contact written), `timed_out` or `cancelled` (the
    # rows processed by then are written); also `POST /_sandbox/faults` at run time.
    failed_imports: int = 0
    timed_out_imports: int = 0
    cancelled_imports: int = 0

    issuer: str = CC_ISSUER
    audience: str = CC_AUDIENCE
    subject: str = "owner@sandbox.invalid"
    platform_user_id: str = "6f9b2c1e-1c1d-4a8e-9a55-3b1c0c5e7d21"
    default_list_name: str = "General Interest"
    seed: int | None = None  # makes fault sampling repeatable
    extra_scopes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.refresh_tokens not in ("rotating", "long-lived"):
            raise ValueError("refresh_tokens must be 'rotating' or 'long-lived'")
        if self.rate_limit_window not in ("sliding", "fixed"):
            raise ValueError("rate_limit_window must be 'sliding' or 'fixed'")
        for name in ("fail_rate", "drop_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if not 0.0 <= self.refresh_grace_s <= MAX_GRACE_S:
            raise ValueError(f"refresh_grace_s must be between 0 and {MAX_GRACE_S:g} (Okta)")
        if self.access_token_lifetime_s <= 0 or self.refresh_token_lifetime_s <= 0:
            raise ValueError("token lifetimes must be positive")
