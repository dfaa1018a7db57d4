"""One typed settings object, read once from LEADSYNC_* variables (and an optional .env).

Defaults point at the real Constant Contact endpoints (facts sheet, section 1.2); every endpoint
can be overridden so the worker runs against the sandbox or any RFC 6749 / 8628 server.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from worker.base.errors import ConfigError

CC_AUTHZ = "https://authz.constantcontact.com/oauth2/default/v1"
CC_ISSUER = "https://identity.constantcontact.com/oauth2/aus1lm3ry9mF7x2Ja0h8"
ENV_PREFIX = "LEADSYNC_"


def _split_csv(value: Any) -> Any:
    """Accept `a,b c` from the environment as well as a real list."""
    if isinstance(value, str):
        return [part for part in value.replace(",", " ").split() if part]
    return value


class Settings(BaseSettings):
    """Everything leadsync can be told from outside; units are in the names."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    # Where state lives: the broker, the token record, the limiter, dead letters.
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_sentinel_master: str = "mymaster"  # used when REDIS_URL is sentinel://...;sentinel://...
    key_prefix: str = "leadsync"
    account: str = "default"

    # OAuth client registered in Constant Contact's developer portal ("API key" = client_id).
    client_id: str = ""
    client_secret: SecretStr | None = None
    redirect_uri: str = "http://127.0.0.1:8765/callback"
    scopes: str = "contact_data offline_access"

    # Endpoints (facts sheet 1.2); all overridable.
    api_base_url: str = "https://api.cc.email/v3"
    authorize_url: str = f"{CC_AUTHZ}/authorize"
    token_url: str = f"{CC_AUTHZ}/token"
    device_authorization_url: str = f"{CC_AUTHZ}/device/authorize"
    revoke_url: str = f"{CC_AUTHZ}/revoke"
    jwks_url: str = f"{CC_ISSUER}/v1/keys"
    token_issuer: str = CC_ISSUER
    token_audience: str = "https://api.cc.email/v3"
    jwt_leeway_s: float = Field(default=60.0, ge=0)

    # Token storage and refresh.
    token_key: SecretStr | None = None  # Fernet key; encrypts tokens at rest in Redis when set
    refresh_margin_ratio: float = Field(default=0.25, gt=0, lt=1)
    refresh_max_age_s: float = Field(default=86_400.0, gt=0)
    refresh_interval_s: float = Field(default=30.0, gt=0)
    refresh_lock_ttl_s: float = Field(default=45.0, gt=0)
    alert_webhook_url: str | None = None

    # HTTP.
    http_timeout_s: float = Field(default=10.0, gt=0)

    # Leads.
    list_ids: Annotated[list[str], NoDecode] = Field(default_factory=list)
    rate_limit_per_s: float = Field(default=3.7, gt=0)
    daily_quota: int = Field(default=10_000, ge=1)
    quota_reserve: int = Field(default=200, ge=0)
    max_retries: int = Field(default=12, ge=0)
    backoff_base_s: float = Field(default=5.0, gt=0)
    backoff_max_s: float = Field(default=2_700.0, gt=0)
    # A live worker's held messages are kept fresh by a heartbeat (worker/broker/heartbeat.py),
    # so this is how long after a worker dies its messages go back, not a bound on any task or wait.
    visibility_timeout_s: float = Field(default=30.0, gt=0)
    outcome_ttl_s: float = Field(default=7 * 86_400.0, gt=0)
    resume_interval_s: float = Field(default=15.0, gt=0)  # how often parked leads are checked
    # How long a task waits for an unreachable Redis to record its outcome before it hands the
    # message back unacknowledged (worker/ledger/durable.py).
    outcome_wait_s: float = Field(default=30.0, gt=0)
    # How often beat looks for leads whose message is nowhere (worker/ledger/reconcile.py).
    reconcile_interval_s: float = Field(default=30.0, gt=0)
    # Bulk imports for leads without consent (worker/bulk/, README "Bulk delivery").
    bulk: Literal["auto", "always", "off"] = "auto"
    bulk_threshold: int = Field(default=1_000, ge=1)  # queued leads that make a batch worth it
    bulk_interval_s: float = Field(default=2.0, gt=0)  # how often beat runs leadsync.bulk_import
    bulk_linger_s: float = Field(default=3.0, ge=0)  # staged set quiet this long: send a batch
    bulk_max_wait_s: float = Field(default=60.0, gt=0)  # oldest staged lead waits at most this
    bulk_max_contacts: int = Field(default=40_000, ge=1, le=40_000)
    bulk_max_bytes: int = Field(default=3_800_000, ge=10_000, le=4_000_000)  # under CC's 4 MB
    bulk_max_polls: int = Field(default=20, ge=1)  # activity polls per import before a resend
    bulk_poll_max_s: float = Field(default=30.0, gt=0)  # the poll backoff's ceiling
    # A list entry longer than this is kept in the malformed list unread (checked before parsing).
    max_message_bytes: int = Field(default=1_048_576, ge=4_096)

    # Redis is the system of record: without AOF/RDB or with eviction, leads and tokens can
    # vanish. True turns the start-up ERROR and the failing `health` into warnings (demos, tests).
    allow_volatile_redis: bool = False

    # HTTP intake (`leadsync intake`, worker/intake/).
    intake_host: str = "127.0.0.1"
    intake_port: int = Field(default=8080, ge=0, le=65_535)
    intake_max_body_bytes: int = Field(default=1_048_576, ge=1_024)
    intake_rate_limit_per_s: float = Field(default=100.0, gt=0)  # per API key or source
    intake_rate_burst: int = Field(default=200, ge=1)
    intake_idempotency_ttl_s: float = Field(default=86_400.0, gt=0)
    intake_webhook_secrets: SecretStr | None = None  # `source=secret,...` for signed webhooks
    intake_google_ads_key: SecretStr | None = None  # the key typed into Google Ads' lead form
    intake_form_redirect_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Logs.
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("list_ids", "intake_form_redirect_origins", mode="before")
    @classmethod
    def _list_ids_from_csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @model_validator(mode="after")
    def _lock_outlives_request(self) -> Settings:
        # Retries wait in Redis (worker/ledger/schedule.py), not in the broker: no backoff has to
        # fit the visibility timeout any more.
        if self.refresh_lock_ttl_s <= self.http_timeout_s:
            raise ValueError("refresh_lock_ttl_s must exceed http_timeout_s")
        return self


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning a validation error into one line that names the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = [str(part) for part in first.get("loc", ()) if part != "__root__"]
    name = ENV_PREFIX + loc[0].upper() if loc else "settings"
    message = first.get("msg", "invalid value").removeprefix("Value error, ")
    return f"{name}: {message}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
