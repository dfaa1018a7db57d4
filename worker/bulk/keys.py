"""Redis keys of the bulk path, under the same prefix as every other leadsync key."""

from __future__ import annotations

from dataclasses import dataclass

from worker.base.settings import Settings


@dataclass(frozen=True)
class BulkKeys:
    prefix: str

    @classmethod
    def of(cls, settings: Settings) -> BulkKeys:
        return cls(f"{settings.key_prefix}:bulk:{settings.account}")

    @property
    def staged(self) -> str:  # zset: lead_id -> staged at (epoch s), not yet in a batch
        return f"{self.prefix}:staged"

    @property
    def groups(self) -> str:  # hash: lead_id -> its list ids (the batch group), while staged
        return f"{self.prefix}:groups"

    @property
    def batches(self) -> str:  # zset: batch_id -> created at
        return f"{self.prefix}:batches"

    def batch(self, batch_id: str) -> str:  # hash: list_ids, lead_ids, body, activity_id ...
        return f"{self.prefix}:batch:{batch_id}"

    @property
    def lock(self) -> str:  # the batcher/poller's lock (owner token + TTL)
        return f"{self.prefix}:lock"

    @property
    def active_until(self) -> str:  # auto mode stays on this long after the last staging
        return f"{self.prefix}:active-until"

    def consented(self, minute: int) -> str:  # consented leads seen in that minute (counter)
        return f"{self.prefix}:consented:{minute}"

    @property
    def counters(self) -> str:  # hash: imports, polls, throttled, resent ... (status, tests)
        return f"{self.prefix}:counters"
