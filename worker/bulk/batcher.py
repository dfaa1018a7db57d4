"""Staged leads into import batches: one MULTI writes a batch and takes its leads off the set.

A batch is formed when the staged set is full enough for an import (LEADSYNC_BULK_MAX_CONTACTS),
has been quiet for LEADSYNC_BULK_LINGER_S (the backlog is all staged) or its oldest lead has
waited LEADSYNC_BULK_MAX_WAIT_S. Each batch (hash `bulk:<account>:batch:<id>`) holds its list ids,
its lead ids in row order and the encoded request body, written in the same transaction that
removes its leads from the staged set: a crash before it leaves them staged, after it leaves
the batch to send. The leads stay `staged` in the ledger until their import settles them.
Forming at least MIN_STAGING_SAMPLE leads also notes how fast the workers staged them (count
over the span of their staging times), which the expected finish (finish.py) uses.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from worker.base.errors import InvalidLeadError
from worker.base.redis_text import text as _text
from worker.base.scope import Scope
from worker.bulk.finish import MIN_STAGING_SAMPLE
from worker.bulk.rows import encode, import_row, pack
from worker.leads.wire import parse_message

log = logging.getLogger("leadsync.bulk")
CHUNK = 1_000  # keys read per round trip


class Batcher:
    def __init__(self, scope: Scope) -> None:
        self.settings = scope.settings
        self.redis = scope.redis
        self.keys = scope.keys.bulk
        self.lead_keys = scope.keys

    def ready(self, now: float) -> bool:
        count = int(self.redis.zcard(self.keys.staged))
        if count == 0:
            return False
        if count >= self.settings.bulk_max_contacts:
            return True
        if self.settings.bulk_linger_s <= 0:
            return True  # no linger; a staging score rounded up past `now` must not delay it
        oldest = self.redis.zrange(self.keys.staged, 0, 0, withscores=True)
        newest = self.redis.zrange(self.keys.staged, -1, -1, withscores=True)
        return (now - float(newest[0][1]) >= self.settings.bulk_linger_s
                or now - float(oldest[0][1]) >= self.settings.bulk_max_wait_s)

    def form(self, now: float) -> tuple[list[str], list[str]]:
        """Batches from every staged lead: (new batch ids, lead ids whose message is lost)."""
        members: list[Any] = self.redis.zrange(self.keys.staged, 0, -1, withscores=True)
        staged = [_text(m) for m, _ in members]
        if len(members) >= MIN_STAGING_SAMPLE:  # how fast workers stage, for `status`
            span = float(members[-1][1]) - float(members[0][1])
            self.redis.hset(self.keys.counters, "staging_per_s",
                            f"{len(members) / max(span, 1.0):.3f}")
        groups: dict[str, list[tuple[str, str]]] = {}
        lost: list[str] = []
        names = self._field_names()
        for start in range(0, len(staged), CHUNK):
            ids = staged[start:start + CHUNK]
            pipe = self.redis.pipeline(transaction=False)
            pipe.hmget(self.keys.groups, ids)
            pipe.mget([self.lead_keys.lead_message(i) for i in ids])
            group_keys, messages = pipe.execute()
            for lead_id, group, message in zip(ids, group_keys, messages, strict=True):
                try:
                    lead = parse_message(message) if message is not None else None
                except InvalidLeadError:
                    lead = None
                if lead is None or group is None:
                    lost.append(lead_id)
                    continue
                groups.setdefault(_text(group), []).append(
                    (lead_id, encode(import_row(lead, names))))
        created: list[str] = []
        for group, items in groups.items():
            for batch in pack(group.split(","), items,
                              max_contacts=self.settings.bulk_max_contacts,
                              max_bytes=self.settings.bulk_max_bytes):
                batch_id = uuid.uuid4().hex[:16]
                pipe = self.redis.pipeline(transaction=True)
                pipe.hset(self.keys.batch(batch_id), mapping={
                    "list_ids": encode(batch.list_ids), "lead_ids": ",".join(batch.lead_ids),
                    "count": len(batch.lead_ids), "body": batch.body(), "bytes": batch.size,
                    "created_at": f"{now:.3f}", "next_at": f"{now:.3f}", "polls": 0,
                    "sends": 0})
                pipe.zadd(self.keys.batches, {batch_id: now})
                pipe.zrem(self.keys.staged, *batch.lead_ids)
                pipe.hdel(self.keys.groups, *batch.lead_ids)
                pipe.execute()
                created.append(batch_id)
                log.info("bulk: batch %s formed: %d leads, %d bytes, %d lists", batch_id,
                         len(batch.lead_ids), batch.size, len(batch.list_ids))
        return created, lost

    def _field_names(self) -> dict[str, str]:
        """custom field id -> a name, from the fleet's cached map
        (worker/delivery/custom_fields.py)."""
        raw = self.redis.get(self.lead_keys.custom_field_ids)
        if raw is None:
            return {}
        known: dict[str, Any] = json.loads(raw)
        out: dict[str, str] = {}
        for name, field_id in sorted(known.items(), key=lambda kv: " " in kv[0]):
            out.setdefault(str(field_id).lower(), name.replace(" ", "_"))
        return out
