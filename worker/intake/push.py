"""Queue an intake request's leads: all or nothing, each lead id once, the answer stored with it.

One Lua call per request (intake_push.lua) LPUSHes the same messages `enqueue_leads` would
(`worker.wire.encode_message`), marks each lead id as seen, and stores the answer under the
request's Idempotency-Key, atomically: the 202 is sent only after that call returned, and a
request cut off by a Redis failure left either everything or nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from redis.asyncio import Redis

from worker.keys import Keys
from worker.lead import Lead
from worker.settings import Settings
from worker.wire import QUEUE, encode_message

_SCRIPT = resources.files("worker").joinpath("lua/intake_push.lua").read_text()


@dataclass(frozen=True)
class PushResult:
    replayed: str | None  # the stored answer when the Idempotency-Key was seen before
    pushed: int  # leads that were new (the rest had been queued before)


class Pusher:
    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.keys = Keys(settings.key_prefix, settings.account)
        self.seen_ttl_s = int(settings.outcome_ttl_s)
        self.answer_ttl_s = int(settings.intake_idempotency_ttl_s)
        self.script = redis.register_script(_SCRIPT)

    def answer_key(self, credential: str, idempotency_key: str | None) -> str:
        if not idempotency_key:
            return ""
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
        return self.keys.intake_answer(credential, digest)

    async def lookup(self, answer_key: str, redis: Redis) -> str | None:
        """A stored answer, read before the body is even parsed (cheap replays)."""
        if not answer_key:
            return None
        stored = await redis.get(answer_key)
        return stored.decode() if isinstance(stored, bytes) else stored

    async def push(self, leads: list[Lead], answer_key: str, answer: str) -> PushResult:
        keys = [QUEUE, answer_key, *(self.keys.intake_seen(lead.lead_id) for lead in leads)]
        args: list[str | int] = [self.seen_ttl_s, self.answer_ttl_s, answer]
        args += [encode_message(lead) for lead in leads]
        done, value = await self.script(keys=keys, args=args)
        if int(done) == 0:
            return PushResult(value.decode() if isinstance(value, bytes) else str(value), 0)
        return PushResult(None, int(value))
