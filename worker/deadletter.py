"""Dead letters: leads retrying cannot help, kept with why, for a person to look at or replay.

Each entry keeps the lead as received, the redacted reason, a short reason code, attempts, last
HTTP status and times. Entries live in one hash (by lead id) with a sorted set by time beside it
for age filters. Raw list entries the worker could not even read as a task (worker/guard.py)
sit in the `malformed` list and are shown here with the reason code `malformed`. Replay keeps
the `lead_id` and puts the lead back on the `leads` queue with a fresh retry budget.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from redis import Redis

from worker.idempotency import Ledger, Side
from worker.keys import Keys
from worker.lead import parse_lead
from worker.settings import Settings
from worker.wire import encode_message

MALFORMED = "malformed"
MALFORMED_PREFIX = "mf_"


@dataclass(frozen=True)
class DeadLetter:
    lead_id: str
    reason: str  # redacted
    reason_code: str
    attempts: int
    last_status: int | None
    first_seen: float | None
    dead_at: float
    lead: Any  # the lead object as received (a dict, or whatever a broken producer sent)
    replayable: bool = True

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str)


class UnknownDeadLetterError(KeyError):
    """No dead letter with that id."""


class DeadLetters:
    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.redis = redis
        self.keys = Keys(settings.key_prefix, settings.account)
        self.ledger = Ledger(settings, redis)

    # --- writing ---------------------------------------------------------------------------
    def add(self, letter: DeadLetter) -> tuple[bool, str]:
        """Store the letter and mark the lead dead-lettered, in one ledger step.

        (False, state) when the lead had settled meanwhile: no letter is stored then."""
        return self.ledger.move(letter.lead_id, "dead", now=letter.dead_at,
                                side=Side(self.keys.dead_letters, self.keys.dead_letter_index,
                                          letter.to_json(), letter.dead_at),
                                reason_code=letter.reason_code, last_status=letter.last_status)

    # --- reading ---------------------------------------------------------------------------
    def get(self, lead_id: str) -> DeadLetter:
        if lead_id.startswith(MALFORMED_PREFIX):
            for letter, _raw in self._malformed():
                if letter.lead_id == lead_id:
                    return letter
            raise UnknownDeadLetterError(lead_id)
        raw = self.redis.hget(self.keys.dead_letters, lead_id)
        if raw is None:
            raise UnknownDeadLetterError(lead_id)
        return _letter(raw)

    def select(self, *, reason: str | None = None, older_than_s: float | None = None,
             newer_than_s: float | None = None, now: float | None = None) -> list[DeadLetter]:
        """Oldest first, with the filters applied (reason code, age in seconds)."""
        now = time.time() if now is None else now
        letters = [_letter(raw) for raw in self.redis.hvals(self.keys.dead_letters)]
        letters += [letter for letter, _raw in self._malformed()]
        chosen = [
            letter for letter in letters
            if (reason is None or letter.reason_code == reason)
            and (older_than_s is None or now - letter.dead_at >= older_than_s)
            and (newer_than_s is None or now - letter.dead_at <= newer_than_s)
        ]
        return sorted(chosen, key=lambda letter: letter.dead_at)

    def counts_by_reason(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for raw in self.redis.hvals(self.keys.dead_letters):
            code = _letter(raw).reason_code
            counts[code] = counts.get(code, 0) + 1
        malformed = int(self.redis.llen(self.keys.malformed))
        if malformed:
            counts[MALFORMED] = counts.get(MALFORMED, 0) + malformed
        return counts

    # --- acting ----------------------------------------------------------------------------
    def replay(self, lead_id: str) -> None:
        """Back onto the queue with the same lead_id and a fresh budget (one MULTI)."""
        letter = self.get(lead_id)
        if not letter.replayable:
            raise ValueError(f"{lead_id} is not a lead ({letter.reason_code}); it can only be "
                             "purged")
        lead = parse_lead(letter.lead)  # InvalidLeadError if it never was a valid lead
        moved, state = self.ledger.move(
            lead.lead_id, "replay", message=encode_message(lead),
            side=Side(self.keys.dead_letters, self.keys.dead_letter_index, None))
        if not moved:
            raise ValueError(f"{lead_id} is {state} now; not replayed (purge the letter)")

    def purge(self, letters: list[DeadLetter]) -> int:
        removed = 0
        malformed = {letter.lead_id for letter in letters
                     if letter.lead_id.startswith(MALFORMED_PREFIX)}
        if malformed:
            for letter, raw in self._malformed():
                if letter.lead_id in malformed:
                    removed += int(self.redis.lrem(self.keys.malformed, 1, raw))  # type: ignore[arg-type]  # redis-py accepts bytes values; the stub says str
        for letter in letters:
            if letter.lead_id in malformed:
                continue
            pipe = self.redis.pipeline(transaction=True)
            pipe.hdel(self.keys.dead_letters, letter.lead_id)
            pipe.zrem(self.keys.dead_letter_index, letter.lead_id)
            removed += int(pipe.execute()[0])
        return removed

    def _malformed(self) -> list[tuple[DeadLetter, bytes]]:
        out = []
        for raw in self.redis.lrange(self.keys.malformed, 0, -1):
            raw_bytes = raw if isinstance(raw, bytes) else str(raw).encode()
            try:
                entry = json.loads(raw_bytes)
            except ValueError:
                entry = {"reason": "unreadable", "raw": raw_bytes.decode("utf-8", "replace")}
            digest = hashlib.sha256(raw_bytes).hexdigest()[:16]
            out.append((DeadLetter(
                lead_id=MALFORMED_PREFIX + digest, reason=str(entry.get("reason", "?")),
                reason_code=MALFORMED, attempts=0, last_status=None, first_seen=None,
                dead_at=float(entry.get("at", 0) or 0), lead=entry.get("raw"),
                replayable=False), raw_bytes))
        return out


def _letter(raw: bytes | str) -> DeadLetter:
    data: dict[str, Any] = json.loads(raw)
    return DeadLetter(**data)
