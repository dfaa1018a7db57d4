"""Who may post, and how fast: the credential check and its rate limit in one Redis call.

Credentials are an API key (`Authorization: Bearer lsk_...`, or the form's `_key` field), a
signed webhook (signatures.py) or Google's `google_key`. Each has its own GCRA budget
(LEADSYNC_INTAKE_RATE_LIMIT_PER_S, LEADSYNC_INTAKE_RATE_BURST) kept in Redis, so every intake
process behind a load balancer shares it.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from importlib import resources

from redis.asyncio import Redis

from worker.intake.apikeys import hash_key
from worker.intake.signatures import REPLAY_WINDOW_S
from worker.keys import Keys
from worker.settings import Settings

_SCRIPT = resources.files("worker").joinpath("lua/intake_admit.lua").read_text()
# The codes intake_admit.lua returns.
UNKNOWN, ADMITTED, REVOKED, WRONG_SCOPE, LIMITED, REPLAYED = range(6)


@dataclass(frozen=True)
class Admission:
    code: int
    name: str = ""
    retry_after_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.code == ADMITTED


class Admitter:
    """Runs intake_admit.lua (EVALSHA, reloaded on NOSCRIPT by redis-py)."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.keys = Keys(settings.key_prefix, settings.account)
        self.interval_ms = 1000.0 / settings.intake_rate_limit_per_s
        self.burst = settings.intake_rate_burst
        self.script = redis.register_script(_SCRIPT)

    async def _run(self, mode: str, first_key: str, who: str, scope: str = "") -> Admission:
        now_ms = int(time.time() * 1000)
        code, name, wait_ms = await self.script(
            keys=[first_key, self.keys.intake_rate(who)],
            args=[mode, now_ms, self.interval_ms, self.burst, scope, REPLAY_WINDOW_S * 1000])
        text = name.decode() if isinstance(name, bytes) else str(name)
        return Admission(int(code), text, int(wait_ms) / 1000.0)

    async def api_key(self, key: str, scope: str) -> Admission:
        digest = hash_key(key)
        return await self._run("key", self.keys.intake_key(digest), "key:" + digest[:32], scope)

    async def signed(self, source: str, signature: str) -> Admission:
        marker = self.keys.intake_signature(hashlib.sha256(signature.encode()).hexdigest()[:32])
        admission = await self._run("sig", marker, "src:" + source)
        return Admission(admission.code, source, admission.retry_after_s)

    async def source(self, source: str) -> Admission:
        """A source whose secret the caller already checked (Google's google_key)."""
        admission = await self._run("none", self.keys.intake_rate("unused"), "src:" + source)
        return Admission(admission.code, source, admission.retry_after_s)
