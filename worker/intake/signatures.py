"""Signed webhooks: HMAC-SHA256 of `<timestamp>.<raw body>` with a per-source secret.

Headers: `X-Leadsync-Source: NAME`, `X-Leadsync-Timestamp: <unix seconds>`,
`X-Leadsync-Signature: v1=<hex>`. A timestamp more than five minutes off is refused (replay
window), and a signature is accepted once within the window (admission.lua keeps a marker).
"""

from __future__ import annotations

import hashlib
import hmac
import time

from pydantic import SecretStr

from worker.base.errors import ConfigError

SOURCE_HEADER = "x-leadsync-source"
TIMESTAMP_HEADER = "x-leadsync-timestamp"
SIGNATURE_HEADER = "x-leadsync-signature"
REPLAY_WINDOW_S = 300
VERSION = "v1"


def parse_secrets(value: SecretStr | None) -> dict[str, bytes]:
    """`source=secret,other=secret2` (commas or spaces) from LEADSYNC_INTAKE_WEBHOOK_SECRETS."""
    if value is None:
        return {}
    found: dict[str, bytes] = {}
    for part in value.get_secret_value().replace(",", " ").split():
        name, sep, secret = part.partition("=")
        if not sep or not name or len(secret) < 16:
            raise ConfigError("LEADSYNC_INTAKE_WEBHOOK_SECRETS: expected source=secret pairs, "
                              "each secret at least 16 characters")
        found[name] = secret.encode()
    return found


def sign(secret: bytes, timestamp: int | str, body: bytes) -> str:
    """The header value a producer sends (also what docs/producers compute)."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"{VERSION}={mac}"


def check(secret: bytes, timestamp: str, signature: str, body: bytes,
          now: float | None = None) -> str | None:
    """None when the signature is good and fresh, else the reason (no secret in it)."""
    try:
        sent_at = int(timestamp)
    except ValueError:
        return "timestamp is not unix seconds"
    now = time.time() if now is None else now
    if abs(now - sent_at) > REPLAY_WINDOW_S:
        return "timestamp outside the 5-minute window"
    if not hmac.compare_digest(sign(secret, sent_at, body), signature.strip()):
        return "signature does not match"
    return None
