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
import time
from typing import Any, NamedTuple, NoReturn

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


class Kept(NamedTuple):
    """The record this process last found stored (worker/auth/access.py reuses it)."""

    stored: str  # its access_token field as stored: a ciphertext under a key, new every write
    record: TokenRecord
    at: float  # time.monotonic() just before the read or probe that found it stored


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
        # The record this process last opened and when it was last found stored: delivery
        # reuses it while it is that recent, and probes the stored field and state otherwise
        # (worker/auth/access.py). Shared by the process's threads; a forked child builds its
        # own Account, so its own store (worker/account.py).
        self.kept: Kept | None = None
        self._kept_lock = threading.Lock()
        self._written_at = float("-inf")  # a read begun before this may predate our write

    # --- what this process knows of the stored record ---------------------------------
    def keep(self, kept: Kept) -> None:
        """Keep `kept` unless what is kept was found stored later, or this store wrote after
        its read began (the read may show the record before the write)."""
        with self._kept_lock:
            current = self.kept
            if kept.at >= self._written_at and (current is None or kept.at >= current.at):
                self.kept = kept

    def forget(self, *, wrote: bool = False) -> None:
        """Nothing kept: the next use reads. `wrote`: this store just wrote the record."""
        with self._kept_lock:
            self.kept = None
            if wrote:
                self._written_at = time.monotonic()

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
        (reported at each read). The record is kept (`keep`) unless it is one of those."""
        at = time.monotonic()
        raw = self.raw()
        try:
            record = self.opened(raw)
        except TokenKeyError:
            self.forget()
            raise
        if record is None or (self._fernet is not None and token_key.at_rest(
                raw, SEALED_FIELDS) in ("clear", "partly clear")):
            self.forget()
            return record, None
        stored = raw.get("access_token", "")
        self.keep(Kept(stored, record, at))
        return record, stored

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
        try:
            self.redis.delete(self.key)
        finally:
            self.forget(wrote=True)

    def _run(self, expected: int, mode: str, bump: str, fields: dict[str, str]) -> int:
        args: list[str] = [str(expected), mode, bump]
        for name, value in fields.items():
            args += [name, value]
        try:
            ok, generation = self._cas(keys=[self.key], args=args)
        except RedisError as exc:
            raise RedisUnavailableError(f"cannot write the token record: {exc}") from None
        finally:
            self.forget(wrote=True)  # written, refused or unknown: read it afresh
        if not ok:
            raise StaleWriteError(int(generation))
        return int(generation)
