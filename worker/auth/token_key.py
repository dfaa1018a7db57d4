"""LEADSYNC_TOKEN_KEY incidents: a key that cannot open the stored tokens, tokens left in clear.

Every process reading the token record may meet a wrong key (prefork children, beat, the CLI),
so the incident is recorded in Redis per key fingerprint and the ERROR line is written once for
the fleet, not once per read. An incident is over when a process with that key reads the record
again, when `leadsync auth ...` stores a new pair, or after QUIET_S without a failed read; the
next failure after that is a new incident (a new ERROR). `leadsync status` and `health` read the
open incidents, so a worker with the wrong key shows even when the CLI has the right one.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from redis.exceptions import RedisError

from worker.base.redaction import fingerprint
from worker.base.redis_text import text as _text
from worker.base.scope import Scope
from worker.base.settings import Settings
from worker.lua import script

log = logging.getLogger("leadsync.token_key")

ENCRYPTED_PREFIX = "fernet:"
QUIET_S = 600.0  # a failure after this long without one opens a new incident
# `health` fails for another process's key only while it keeps failing: its workers retry
# parked leads and refresh ticks every few seconds, so a minute of silence means it is gone.
ACTIVE_S = 60.0
KEEP_S = 86_400  # the record of incidents expires a day after the last failure
NO_KEY = "none"
CLEAR = "clear:"  # field prefix: tokens found in clear while this key is set


def key_fingerprint(settings: Settings) -> str:
    """Names a key in logs and status without revealing it ("none" without a key)."""
    if settings.token_key is None:
        return NO_KEY
    return fingerprint(settings.token_key.get_secret_value())


class Incidents:
    """The account's LEADSYNC_TOKEN_KEY incidents, reported by this process (one per Account)."""

    def __init__(self, scope: Scope) -> None:
        self.redis = scope.redis
        self.key = scope.keys.token_key_errors
        self.fingerprint = key_fingerprint(scope.settings)
        self._failed_here: set[str] = set()  # fingerprints reported here (cleared on success)

    def _report(self, field: str, reason: str) -> bool:
        try:
            return bool(script("token_key_incident").run(
                self.redis, [self.key], [field, time.time(), reason, QUIET_S, KEEP_S]))
        except RedisError:
            return field not in self._failed_here  # Redis trouble: at least once per process

    def unreadable(self, reason: str) -> None:
        """The tokens cannot be opened with this process's key: ERROR once per incident."""
        fp = self.fingerprint
        opened = self._report(fp, reason)
        self._failed_here.add(fp)
        if opened:
            which = "no key is set here" if fp == NO_KEY else f"key {fp} cannot open them"
            log.error(
                "%s. Leads are parked (reason token_key) and no token is refreshed until it is "
                "fixed: give every worker and beat the LEADSYNC_TOKEN_KEY the tokens were stored "
                "with (%s), or store new tokens with `leadsync auth device`",
                reason, which, extra={"event": "token_key_invalid", "token_key": fp})
        else:
            log.debug("token record unreadable with key %s (incident already reported)", fp)

    def readable(self) -> None:
        """This process reads the tokens again: close its incident (INFO once)."""
        fp = self.fingerprint
        if fp not in self._failed_here:
            return
        self._failed_here.discard(fp)
        try:
            closed = self.redis.hdel(self.key, fp, f"{fp}:last", f"{fp}:reason")
        except RedisError:
            return
        if closed:
            log.info("LEADSYNC_TOKEN_KEY: the stored tokens open again (key %s); parked leads "
                     "resume", fp, extra={"event": "token_key_ok", "token_key": fp})

    def clear_tokens(self) -> None:
        """Tokens sit in clear although a key is set: WARNING once per incident."""
        if self._report(CLEAR + self.fingerprint, "tokens stored in clear"):
            log.warning(
                "LEADSYNC_TOKEN_KEY is set but the stored tokens are in clear (written without "
                "a key); they are encrypted at the next write (the next refresh, or run "
                "`leadsync auth refresh` now)",
                extra={"event": "token_key_clear", "token_key": self.fingerprint})

    def forget(self) -> None:
        """A new pair was stored under the current key: every earlier incident is moot."""
        self._failed_here.clear()
        self.redis.delete(self.key)

    def open(self, *, now: float | None = None, within_s: float = QUIET_S
             ) -> list[dict[str, Any]]:
        """Keys that failed to open the tokens within `within_s`: fingerprint, since, last,
        why (any process's, not only this one's)."""
        now = time.time() if now is None else now
        raw = {_text(k): _text(v) for k, v in self.redis.hgetall(self.key).items()}
        found = []
        for field, first in raw.items():
            if ":" in field:  # <fp>:last, <fp>:reason and the clear:<fp> entries
                continue
            last = float(raw.get(f"{field}:last", 0) or 0)
            if now - last > within_s:
                continue
            found.append({"token_key": field, "since": float(first or 0), "last_seen": last,
                          "reason": raw.get(f"{field}:reason", "")})
        return sorted(found, key=lambda item: item["since"])


def at_rest(raw: dict[str, str], sealed: tuple[str, ...]) -> str:
    """How the record's secret fields are stored: encrypted, clear, partly clear, or none."""
    values = [raw[name] for name in sealed if raw.get(name)]
    if not values:
        return "none"
    encrypted = sum(value.startswith(ENCRYPTED_PREFIX) for value in values)
    if encrypted == len(values):
        return "encrypted"
    return "clear" if encrypted == 0 else "partly clear"
