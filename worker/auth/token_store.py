"""One token record per account in Redis, written only by compare-and-set on its generation.

A writer says which generation it read; if another process wrote since, the write is refused
and the caller re-reads (authlib's `update_token(..., refresh_token=old)` made atomic). Tokens
are Fernet-encrypted at rest when LEADSYNC_TOKEN_KEY is set.
"""

from __future__ import annotations

from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from redis import Redis
from redis.exceptions import RedisError

from worker.auth.token_record import SECRET_FIELDS, TokenRecord
from worker.errors import ConfigError, RedisUnavailableError
from worker.keys import Keys
from worker.settings import Settings

_ENC_PREFIX = "fernet:"

# KEYS[1] token hash
# ARGV[1] expected generation (0 = nothing stored), ARGV[2] "replace" | "update",
# ARGV[3] "bump" | "keep" (bump: generation becomes expected + 1), ARGV[4..] field, value pairs
# Returns {1, generation written} on success, {0, current generation} when stale.
_CAS = """
local current = tonumber(redis.call('HGET', KEYS[1], 'generation') or '0')
if current ~= tonumber(ARGV[1]) then
  return {0, current}
end
if ARGV[2] == 'update' and current == 0 then
  return {0, current}
end
if ARGV[2] == 'replace' then
  redis.call('DEL', KEYS[1])
end
local generation = current
if ARGV[3] == 'bump' then generation = current + 1 end
for i = 4, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('HSET', KEYS[1], 'generation', tostring(generation))
return {1, generation}
"""


class StaleWriteError(Exception):
    """Internal: the record changed since it was read (callers re-read; never user-facing)."""

    def __init__(self, current_generation: int) -> None:
        super().__init__(f"token record is at generation {current_generation}")
        self.current_generation = current_generation


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class TokenStore:
    """Read and compare-and-set the account's token record."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.redis = redis
        self.key = Keys(settings.key_prefix, settings.account).token
        secret = settings.token_key.get_secret_value() if settings.token_key else ""
        try:
            self._fernet = Fernet(secret.encode()) if secret else None
        except ValueError:
            raise ConfigError(
                "LEADSYNC_TOKEN_KEY: not a Fernet key (make one with `leadsync auth genkey`)"
            ) from None
        self._cas = redis.register_script(_CAS)

    # --- encryption -------------------------------------------------------------------
    def _seal(self, value: str) -> str:
        if not value or self._fernet is None:
            return value
        return _ENC_PREFIX + self._fernet.encrypt(value.encode()).decode()

    def _open(self, value: str) -> str:
        if not value.startswith(_ENC_PREFIX):
            return value
        if self._fernet is None:
            raise ConfigError("LEADSYNC_TOKEN_KEY: tokens are stored encrypted; set the key")
        try:
            return self._fernet.decrypt(value[len(_ENC_PREFIX):].encode()).decode()
        except InvalidToken:
            raise ConfigError(
                "LEADSYNC_TOKEN_KEY: cannot decrypt the stored tokens with this key"
            ) from None

    # --- reads and writes ---------------------------------------------------------------
    def read(self) -> TokenRecord | None:
        """The current record, or None when nothing is stored."""
        try:
            raw = self.redis.hgetall(self.key)
        except RedisError as exc:
            raise RedisUnavailableError(f"cannot read the token record: {exc}") from None
        if not raw:
            return None
        data = {_text(k): _text(v) for k, v in raw.items()}
        for name in SECRET_FIELDS:
            if name in data:
                data[name] = self._open(data[name])
        return TokenRecord.from_hash(data)

    def generation(self) -> int:
        record = self.read()
        return record.generation if record else 0

    def replace(self, expected_generation: int, record: TokenRecord) -> int:
        """Write a whole new pair (authorization or refresh); the generation goes up by one."""
        fields = record.to_hash()
        fields.pop("generation")
        for name in SECRET_FIELDS:
            fields[name] = self._seal(fields[name])
        return self._run(expected_generation, "replace", "bump", fields)

    def update(self, expected_generation: int, **changes: Any) -> int:
        """Change bookkeeping fields (state, failures) only if nobody wrote a new pair since."""
        fields = {name: str(value) for name, value in changes.items()}
        if set(fields) & {"generation", *SECRET_FIELDS}:
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
