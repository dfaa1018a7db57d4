"""PKCE (RFC 7636, S256 only) and the `state` value that binds a callback to its request."""

from __future__ import annotations

import base64
import hashlib
import secrets

_UNRESERVED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def make_verifier(nbytes: int = 48) -> str:
    """A high-entropy code_verifier: 64 url-safe characters by default (RFC allows 43-128)."""
    verifier = secrets.token_urlsafe(nbytes)
    if not 43 <= len(verifier) <= 128:
        raise ValueError("code_verifier must be 43-128 characters")
    return verifier


def challenge_s256(verifier: str) -> str:
    """BASE64URL(SHA256(verifier)) without padding, as RFC 7636 section 4.2 defines."""
    if not 43 <= len(verifier) <= 128 or not set(verifier) <= _UNRESERVED:
        raise ValueError("code_verifier must be 43-128 unreserved characters")
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def make_state() -> str:
    """An unguessable `state`; the callback is rejected unless it comes back unchanged."""
    return secrets.token_urlsafe(24)


def same_state(expected: str, received: str | None) -> bool:
    """Constant-time comparison so the check leaks nothing about the expected value."""
    return received is not None and secrets.compare_digest(expected, received)
