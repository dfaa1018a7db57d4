"""API keys for the intake: shown once at creation, stored only as their SHA-256 in Redis.

A key belongs to a named source and has one scope: `leads` (the JSON API, a back end's secret)
or `form` (an HTML form: the key sits in the page, so it can post form fields and nothing else).
Revoking keeps the record (marked revoked, so the caller hears 403, not 401) until re-created.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass

from worker.base.errors import ConfigError
from worker.base.redis_text import text as _text
from worker.base.scope import Scope

KEY_PREFIX = "lsk_"
SCOPES = ("leads", "form")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


class ApiKeyError(ConfigError):
    """A key command could not be done (bad name, unknown key, name taken): an operator's input,
    like a setting, never a lead's fault (outcome.py's ConfigError row, if it ever got there)."""


@dataclass(frozen=True)
class ApiKeyInfo:
    name: str
    scope: str
    created_at: float
    revoked: bool
    hint: str  # the key's first characters, enough to recognize it, useless to an attacker


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class ApiKeys:
    """Create, list and revoke keys (the `leadsync intake keys ...` commands)."""

    def __init__(self, scope: Scope) -> None:
        self.redis = scope.redis
        self.keys = scope.keys

    def create(self, name: str, scope: str = "leads") -> str:
        """A new key for `name`; returns it (the only time it exists in clear)."""
        if not _NAME.fullmatch(name):
            raise ApiKeyError("key name: 1-63 characters of a-z, 0-9, '_', '.', '-'")
        if scope not in SCOPES:
            raise ApiKeyError(f"scope must be one of {', '.join(SCOPES)}")
        old = self.redis.hget(self.keys.intake_key_names, name)
        if old is not None:
            record = self.redis.hget(self.keys.intake_key(_text(old)), "revoked")
            if record is not None and _text(record) != "1":
                raise ApiKeyError(f"key {name!r} exists; revoke it first")
        key = new_key()
        digest = hash_key(key)
        pipe = self.redis.pipeline(transaction=True)
        if old is not None:
            pipe.delete(self.keys.intake_key(_text(old)))
        pipe.hset(self.keys.intake_key(digest), mapping={
            "name": name, "scope": scope, "created_at": f"{time.time():.3f}", "revoked": "0",
            "hint": key[: len(KEY_PREFIX) + 4]})
        pipe.hset(self.keys.intake_key_names, name, digest)
        pipe.execute()
        return key

    def list(self) -> list[ApiKeyInfo]:
        found = []
        for name, digest in sorted(self.redis.hgetall(self.keys.intake_key_names).items()):
            raw = self.redis.hgetall(self.keys.intake_key(_text(digest)))
            record = {_text(k): _text(v) for k, v in raw.items()}
            if record:
                found.append(ApiKeyInfo(_text(name), record.get("scope", "leads"),
                                        float(record.get("created_at", 0)),
                                        record.get("revoked") == "1", record.get("hint", "")))
        return found

    def revoke(self, name: str) -> None:
        digest = self.redis.hget(self.keys.intake_key_names, name)
        if digest is None:
            raise ApiKeyError(f"no key named {name!r}")
        self.redis.hset(self.keys.intake_key(_text(digest)), "revoked", "1")
