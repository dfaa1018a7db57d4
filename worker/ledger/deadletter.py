"""Dead letters: leads retrying cannot help, kept with why, for a person to look at or replay.

Each entry keeps the lead as received, the redacted reason, a short reason code, attempts, last
HTTP status and times. Entries live in one hash (by lead id) with a sorted set by time beside it
for age filters and pages, and per-reason counters kept by the same script that writes or
deletes a letter (worker/lua/dead_letter.lua), so `status` and `dlq list` answer from counters
and pages instead of decoding every letter. Raw list entries the worker could not even read as
a task (worker/broker/guard.py) sit in the `malformed` list and are shown here with the reason code
`malformed`. Replay keeps the `lead_id` and puts the lead back on the `leads` queue with a
fresh retry budget.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from redis.exceptions import WatchError

from worker.base.redis_text import text as _text
from worker.base.scope import Scope
from worker.leads.lead import parse_lead
from worker.leads.wire import encode_message
from worker.ledger.ledger import Ledger, Side
from worker.lua import script

MALFORMED = "malformed"
MALFORMED_PREFIX = "mf_"
CHUNK = 500  # letters read per round trip when paging


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


@dataclass(frozen=True)
class Page:
    letters: list[DeadLetter]
    total: int | None  # every letter the filters match, when the counters can tell cheaply


class DeadLetters:
    def __init__(self, scope: Scope, ledger: Ledger) -> None:
        self.redis = scope.redis
        self.keys = scope.keys
        self.ledger = ledger
        self._script = script("dead_letter").register(scope.redis)
        self._script_keys = [self.keys.dead_letters, self.keys.dead_letter_index,
                             self.keys.dead_letter_counts, self.keys.dead_letter_reasons]

    # --- writing ---------------------------------------------------------------------------
    def add(self, letter: DeadLetter, *, counters: tuple[str, ...] = ()) -> tuple[bool, str]:
        """Store the letter and mark the lead dead-lettered, in one ledger step (with the
        outcome `counters`); then count it by reason.

        (False, state) when the lead had settled meanwhile: no letter is stored then. The
        per-reason counters are written right after, without writing the letter a second time
        (a crash in between leaves them one short until `_rebuild_counts` repairs them; `dlq
        list` totals say so by being rebuilt)."""
        moved, state = self.ledger.move(
            letter.lead_id, "dead", now=letter.dead_at,
            side=Side(self.keys.dead_letters, self.keys.dead_letter_index, letter.to_json(),
                      letter.dead_at), counters=counters,
            reason_code=letter.reason_code, last_status=letter.last_status)
        if moved:
            self._script(keys=self._script_keys, args=[
                "count", letter.lead_id, "", letter.reason_code])
        return moved, state

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
        """Every letter the filters match (reason code, age in seconds), oldest first."""
        found = self.page(reason=reason, older_than_s=older_than_s, newer_than_s=newer_than_s,
                          now=now, limit=None).letters
        return sorted(found, key=lambda letter: letter.dead_at)

    def page(self, *, reason: str | None = None, older_than_s: float | None = None,
             newer_than_s: float | None = None, now: float | None = None, offset: int = 0,
             limit: int | None = 100) -> Page:
        """Letters `offset` to `offset + limit` of those the filters match, oldest first, read
        in chunks from the time index (no more than needed), with the total when known."""
        now = time.time() if now is None else now
        low = "-inf" if newer_than_s is None else repr(now - newer_than_s)
        high = "+inf" if older_than_s is None else repr(now - older_than_s)
        sources: list[Iterator[DeadLetter]] = []
        if reason != MALFORMED:
            sources.append(self._in_time_order(low, high, reason))
        if reason in (None, MALFORMED):
            sources.append(self._malformed_in_order(float(low), float(high)))
        merged = heapq.merge(*sources, key=lambda letter: letter.dead_at)
        stop = None if limit is None else offset + limit
        letters = list(itertools.islice(merged, offset, stop))
        return Page(letters, self._total(reason, aged=older_than_s is not None
                                         or newer_than_s is not None, low=low, high=high))

    def counts_by_reason(self) -> dict[str, int]:
        """Letters by reason code, from the counters (a few fields, whatever the count)."""
        pipe = self.redis.pipeline(transaction=True)  # one consistent snapshot
        pipe.hgetall(self.keys.dead_letter_counts)
        pipe.hlen(self.keys.dead_letters)
        pipe.hlen(self.keys.dead_letter_reasons)
        pipe.llen(self.keys.malformed)
        raw_counts, letters, counted, malformed = pipe.execute()
        counts = {_text(code): int(n) for code, n in raw_counts.items() if int(n) > 0}
        if sum(counts.values()) != letters or counted != letters:
            counts = self._rebuild_counts()  # letters written before the counters existed
        if malformed:
            counts[MALFORMED] = counts.get(MALFORMED, 0) + int(malformed)
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
        self._script(keys=self._script_keys, args=["remove", lead_id])  # the counters

    def purge(self, letters: list[DeadLetter]) -> int:
        removed = 0
        malformed = {letter.lead_id for letter in letters
                     if letter.lead_id.startswith(MALFORMED_PREFIX)}
        if malformed:
            for letter, raw in self._malformed():
                if letter.lead_id in malformed:
                    removed += int(self.redis.lrem(self.keys.malformed, 1, raw))  # type: ignore[arg-type]  # redis-py accepts bytes values; the stub says str
        ids = [letter.lead_id for letter in letters if letter.lead_id not in malformed]
        for start in range(0, len(ids), CHUNK):
            pipe = self.redis.pipeline(transaction=True)
            for lead_id in ids[start:start + CHUNK]:
                self._script(keys=self._script_keys, args=["remove", lead_id], client=pipe)
            removed += sum(int(n) for n in pipe.execute())
        return removed

    # --- internals -------------------------------------------------------------------------
    def _in_time_order(self, low: str, high: str, reason: str | None) -> Iterator[DeadLetter]:
        start = 0
        while True:
            ids: list[Any] = list(self.redis.zrangebyscore(
                self.keys.dead_letter_index, low, high, start=start, num=CHUNK))
            if not ids:
                return
            start += len(ids)
            if reason is not None:  # skip other reasons without decoding their letters
                codes = self.redis.hmget(self.keys.dead_letter_reasons, ids)
                ids = [i for i, code in zip(ids, codes, strict=True)
                       if code is None or _text(code) == reason]
            for raw in self.redis.hmget(self.keys.dead_letters, ids) if ids else []:
                if raw is not None:
                    letter = _letter(raw)
                    if reason is None or letter.reason_code == reason:
                        yield letter

    def _malformed_in_order(self, low: float, high: float) -> Iterator[DeadLetter]:
        start = 0
        while True:
            raws = self.redis.lrange(self.keys.malformed, start, start + CHUNK - 1)
            if not raws:
                return
            start += len(raws)
            for raw in raws:
                letter = _malformed_letter(raw)
                if low <= letter.dead_at <= high:
                    yield letter

    def _total(self, reason: str | None, *, aged: bool, low: str, high: str) -> int | None:
        if not aged:
            counts = self.counts_by_reason()
            return sum(counts.values()) if reason is None else counts.get(reason, 0)
        if reason is None and not self.redis.llen(self.keys.malformed):
            return int(self.redis.zcount(self.keys.dead_letter_index, low, high))
        return None  # would need a scan: the caller says "more may match" instead

    def _rebuild_counts(self) -> dict[str, int]:
        """Counters from the letters themselves, once: after an upgrade from a version without
        them (or while a worker of that version still writes). Retried if a letter changes."""
        while True:
            pipe: Any = self.redis.pipeline(transaction=True)  # Any: redis-py's watch is untyped
            try:
                pipe.watch(self.keys.dead_letters)
                reasons = {lead_id: _letter(raw).reason_code for lead_id, raw
                           in pipe.hscan_iter(self.keys.dead_letters, count=1000)}
                counts = dict(Counter(reasons.values()))
                pipe.multi()
                pipe.delete(self.keys.dead_letter_counts, self.keys.dead_letter_reasons)
                if reasons:
                    pipe.hset(self.keys.dead_letter_reasons, mapping=reasons)
                    pipe.hset(self.keys.dead_letter_counts, mapping=counts)
                pipe.execute()
                return counts
            except WatchError:
                continue
            finally:
                pipe.reset()

    def _malformed(self) -> list[tuple[DeadLetter, bytes]]:
        out = []
        for raw in self.redis.lrange(self.keys.malformed, 0, -1):
            raw_bytes = raw if isinstance(raw, bytes) else str(raw).encode()
            out.append((_malformed_letter(raw_bytes), raw_bytes))
        return out


def _malformed_letter(raw: bytes | str) -> DeadLetter:
    raw_bytes = raw if isinstance(raw, bytes) else str(raw).encode()
    try:
        entry = json.loads(raw_bytes)
    except ValueError:
        entry = {"reason": "unreadable", "raw": raw_bytes.decode("utf-8", "replace")}
    if not isinstance(entry, dict):
        entry = {"reason": "unreadable", "raw": raw_bytes.decode("utf-8", "replace")}
    digest = hashlib.sha256(raw_bytes).hexdigest()[:16]
    return DeadLetter(
        lead_id=MALFORMED_PREFIX + digest, reason=str(entry.get("reason", "?")),
        reason_code=MALFORMED, attempts=0, last_status=None, first_seen=None,
        dead_at=float(entry.get("at", 0) or 0), lead=entry.get("raw"), replayable=False)


def _letter(raw: bytes | str) -> DeadLetter:
    data: dict[str, Any] = json.loads(raw)
    return DeadLetter(**data)
