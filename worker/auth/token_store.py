"""One token record per account in Redis, written only by compare-and-set on its generation.

A writer says which generation it read; if another process wrote since, the write is refused
and the caller re-reads (authlib's `update_token(..., refresh_token=old)` made atomic). The tokens
and the account's email (`sub`) are Fernet-encrypted at rest when LEADSYNC_TOKEN_KEY is set; a key
that cannot open them raises TokenKeyError (reported once per incident by worker.auth.token_key),
and a record found in clear under a key is reported and encrypted by the next `replace`.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, NoReturn

from cryptography.fernet import Fernet, InvalidToken
from redis.exceptions import RedisError

from worker.auth import token_key
from worker.auth.token_record import SEALED_FIELDS, TokenRecord
from worker.base.errors import RedisUnavailableError, TokenKeyError
from worker.base.redis_text import text as _text
from worker.base.scope import Scope
from worker.lua import script

_ENC_PREFIX = token_key.ENCRYPTED_PREFIX
log = logging.getLogger(__name__)


class StaleWriteError(Exception):
    """Internal: the record changed since it was read (callers re-read; never user-facing)."""

    def __init__(self, current_generation: int) -> None:
        super().__init__(f"token record is at generation {current_generation}")
        self.current_generation = current_generation


class TokenStore:
    """Read and compare-and-set the account's token record (one per Account: built once, the
    key and script with it)."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.settings = scope.settings
        self.redis = scope.redis
        self.key = scope.keys.token
        self.incidents = token_key.Incidents(scope)
        secret = self.settings.token_key.get_secret_value() if self.settings.token_key else ""
        self._bad_key = ""
        try:
            self._fernet = Fernet(secret.encode()) if secret else None
        except ValueError:  # raised (and reported) by the first read or write, not here
            self._fernet = None
            self._bad_key = ("LEADSYNC_TOKEN_KEY: not a Fernet key (make one with "
                             "`leadsync auth genkey`)")
        self._cas = script("token_cas").register(self.redis)
        # The record this process last opened, with its access_token field as stored: delivery
        # probes that field and reuses the record while it is unchanged (worker/auth/access.py);
        # and each thread's last probe (token value, time.monotonic()).
        self.kept: tuple[str, TokenRecord] | None = None
        self.probed = threading.local()

    def _unreadable(self, reason: str) -> NoReturn:
        self.incidents.unreadable(reason)
        raise TokenKeyError(reason)

    def _check_key(self) -> None:
        if self._bad_key:
            self._unreadable(self._bad_key)

    # --- encryption -------------------------------------------------------------------
    def _seal(self, value: str) -> str:
        if not value or self._fernet is None:
            return value
        return _ENC_PREFIX + self._fernet.encrypt(value.encode()).decode()

    def _open(self, value: str) -> str:
        if not value.startswith(_ENC_PREFIX):
            return value
        if self._fernet is None:
            self._unreadable("LEADSYNC_TOKEN_KEY is not set but the stored tokens are "
                             "encrypted")
        try:
            return self._fernet.decrypt(value[len(_ENC_PREFIX):].encode()).decode()
        except InvalidToken:
            self._unreadable("LEADSYNC_TOKEN_KEY cannot decrypt the stored tokens (a different "
                             "key encrypted them)")

    # --- reads and writes ---------------------------------------------------------------
    def raw(self) -> dict[str, str]:
        """The stored hash as it is (sealed fields still sealed): one HGETALL."""
        try:
            raw = self.redis.hgetall(self.key)
        except RedisError as exc:
            raise RedisUnavailableError(f"cannot read the token record: {exc}") from None
        return {_text(k): _text(v) for k, v in raw.items()}

    def read(self) -> TokenRecord | None:
        """The current record, or None when nothing is stored; TokenKeyError when this key
        cannot open it."""
        return self.read_checked()[0]

    def read_checked(self) -> tuple[TokenRecord | None, str | None]:
        """`read`, and the access token as stored (the ciphertext, fresh with every write)
        when the record sat at rest as it should: a caller may keep the record while that
        field is unchanged (worker/auth/access.py). None for one found in clear under a key
        (reported at each read)."""
        raw = self.raw()
        record = self.opened(raw)
        if record is None or (self._fernet is not None and token_key.at_rest(
                raw, SEALED_FIELDS) in ("clear", "partly clear")):
            return record, None
        return record, raw.get("access_token", "")

    def opened(self, raw: dict[str, str]) -> TokenRecord | None:
        """`raw()`'s hash as a record (None when empty); TokenKeyError as `read`."""
        self._check_key()
        if not raw:
            return None
        data = dict(raw)
        if self._fernet is not None and token_key.at_rest(data, SEALED_FIELDS) in (
                "clear", "partly clear"):
            self.incidents.clear_tokens()
        for name in SEALED_FIELDS:
            if name in data:
                data[name] = self._open(data[name])
        self.incidents.readable()
        return TokenRecord.from_hash(data)

    def at_rest(self) -> str:
        """encrypted | clear | partly clear | none (nothing secret stored)."""
        return token_key.at_rest(self.raw(), SEALED_FIELDS)

    def raw_generation(self) -> int:
        """The stored generation without opening anything (to replace an unreadable record)."""
        return int(self.raw().get("generation") or 0)

    def generation(self) -> int:
        record = self.read()
        return record.generation if record else 0

    def replace(self, expected_generation: int, record: TokenRecord) -> int:
        """Write a whole new pair (authorization or refresh); the generation goes up by one."""
        self._check_key()
        fields = record.to_hash()
        fields.pop("generation")
        for name in SEALED_FIELDS:
            fields[name] = self._seal(fields[name])
        was_clear = self._fernet is not None and self.at_rest() in ("clear", "partly clear")
        generation = self._run(expected_generation, "replace", "bump", fields)
        if was_clear:
            log.info("token record re-encrypted with LEADSYNC_TOKEN_KEY (key %s): it was stored "
                     "in clear", token_key.key_fingerprint(self.settings),
                     extra={"event": "token_key_encrypted"})
        return generation

    def update(self, expected_generation: int, **changes: Any) -> int:
        """Change bookkeeping fields (state, failures) only if nobody wrote a new pair since."""
        self._check_key()
        fields = {name: str(value) for name, value in changes.items()}
        if set(fields) & {"generation", *SEALED_FIELDS}:
            raise ValueError("update() never changes tokens or the generation; use replace()")
        return self._run(expected_generation, "update", "keep", fields)

    def delete(self) -> None:
        self.redis.delete(self.key)

    def _run(self, expected: int, mode: str, bump: str, fields: dict[str, str]) -> int:
        args: list[str] = [str(expected), mode, bump]
        for name, value in fields.items():
            args += [name, value]
        try:
            ok, generation = self._cas(keys=[self.key], args=args)
        except RedisError as exc:
            raise RedisUnavailableError(f"cannot write the token record: {exc}") from None
        if not ok:
            raise StaleWriteError(int(generation))
        return int(generation)
