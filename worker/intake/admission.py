"""Who may post, how fast, and what gets queued: one Lua call per request (intake_accept.lua).

A credential is an API key (`Authorization: Bearer lsk_...`, or a form's `_key` field), a
signed webhook (signatures.py checks the HMAC first) or a source whose secret the route checked
(Google's google_key). Each has its own GCRA budget (LEADSYNC_INTAKE_RATE_LIMIT_PER_S,
LEADSYNC_INTAKE_RATE_BURST) in Redis, shared by every intake process. The same call pushes the
request's leads (the same messages `enqueue_leads` would, `worker.leads.wire.encode_message`), marks
each lead id as seen and stores the answer under the Idempotency-Key, atomically: the 202 is
sent only after it returned, and a request cut off by a Redis failure left all or nothing.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from worker.base.names import LEADS_QUEUE
from worker.base.priority import queue_lists
from worker.base.redis_text import text as _text
from worker.base.scope import Scope
from worker.intake.apikeys import hash_key
from worker.intake.signatures import REPLAY_WINDOW_S
from worker.leads.lead import Lead
from worker.leads.wire import encode_message
from worker.lua import script

# The codes intake_accept.lua returns.
UNKNOWN, ADMITTED, REVOKED, WRONG_SCOPE, LIMITED, REPLAYED = range(6)


@dataclass(frozen=True)
class Credential:
    """What the script needs to admit a request; `who` scopes rate limits and answers."""

    mode: str  # "key", "sig" or "none"
    record_key: str
    who: str
    scope: str = ""
    label: str = ""  # the source's name (sig / none); a key's name comes from Redis


@dataclass(frozen=True)
class Outcome:
    code: int
    name: str = ""
    retry_after_s: float = 0.0
    replayed: str | None = None  # the stored answer when the Idempotency-Key was seen before
    pushed: int = 0  # leads that were new (the others had been queued before)

    @property
    def ok(self) -> bool:
        return self.code == ADMITTED


class Accepter:
    """Builds credentials and runs the script (EVALSHA, reloaded on NOSCRIPT by redis-py)."""

    def __init__(self, scope: Scope, redis: Redis) -> None:
        """`redis` is the intake's asyncio client (the scope's own is synchronous)."""
        settings = scope.settings
        self.keys = scope.keys
        self.interval_ms = 1000.0 / settings.intake_rate_limit_per_s
        self.burst = settings.intake_rate_burst
        self.seen_ttl_s = int(settings.outcome_ttl_s)
        self.answer_ttl_s = int(settings.intake_idempotency_ttl_s)
        self.script = script("intake_accept").register(redis)

    def api_key(self, key: str, scope: str) -> Credential:
        digest = hash_key(key)
        return Credential("key", self.keys.intake_key(digest), "key:" + digest[:32], scope)

    def signed(self, source: str, signature: str) -> Credential:
        marker = self.keys.intake_signature(hashlib.sha256(signature.encode()).hexdigest()[:32])
        return Credential("sig", marker, "src:" + source, label=source)

    def source(self, source: str) -> Credential:
        return Credential("none", self.keys.intake_rate("unused"), "src:" + source,
                          label=source)

    def answer_key(self, credential: Credential, idempotency_key: str | None) -> str:
        if not idempotency_key:
            return ""
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
        return self.keys.intake_answer(credential.who, digest)

    async def run(self, credential: Credential, leads: Sequence[Lead] = (),
                  idempotency_key: str | None = None, answer: str = "") -> Outcome:
        lists = queue_lists(LEADS_QUEUE)  # each lead on the list of its priority (consented first)
        keys = [credential.record_key, self.keys.intake_rate(credential.who), lists[0],
                self.answer_key(credential, idempotency_key), *lists[1:],
                *(self.keys.intake_seen(lead.lead_id) for lead in leads)]
        args: list[str | int | float] = [
            credential.mode, int(time.time() * 1000), self.interval_ms, self.burst,
            credential.scope, REPLAY_WINDOW_S * 1000, self.seen_ttl_s, self.answer_ttl_s, answer]
        args += [encode_message(lead) for lead in leads]
        code, name, wait_ms, stored, pushed = await self.script(keys=keys, args=args)
        text = _text(name) or credential.label
        return Outcome(int(code), text, int(wait_ms) / 1000.0, _text(stored) or None, int(pushed))
