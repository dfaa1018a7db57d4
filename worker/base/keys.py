"""Every Redis key leadsync uses, built from one prefix so operators can find (and tests can
delete) exactly what is ours. Celery's own keys (the `leads` list, `unacked`) are not here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """Key templates under `prefix` (default `leadsync`)."""

    prefix: str = "leadsync"
    account: str = "default"

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # Tokens (one record per Constant Contact account).
    @property
    def token(self) -> str:
        return self._k("token", self.account)

    @property
    def token_lock(self) -> str:
        return self._k("token", self.account, "lock")

    @property
    def token_refresh_requested(self) -> str:
        return self._k("token", self.account, "refresh-requested")

    @property
    def token_endpoint_gate(self) -> str:
        return self._k("token", self.account, "endpoint-gate")

    @property
    def token_alert_sent(self) -> str:
        return self._k("token", self.account, "alert-sent")

    @property
    def token_key_errors(self) -> str:
        """LEADSYNC_TOKEN_KEY incidents by key fingerprint (worker/auth/token_key.py)."""
        return self._k("token", self.account, "key-errors")

    # Rate limit and daily quota (shared by the whole fleet).
    @property
    def rate_limit(self) -> str:
        return self._k("ratelimit", "gcra")

    def daily_quota(self, utc_date: str) -> str:
        return self._k("quota", utc_date)

    # Lead bookkeeping.
    def lead_outcome(self, lead_id: str) -> str:
        return self._k("lead", lead_id)

    def email_lock(self, email_hash: str) -> str:
        return self._k("email-lock", email_hash)

    @property
    def schedule(self) -> str:
        """Leads waiting for a retry (or for a holder's lease), scored by when they are due."""
        return self._k("schedule")

    def lead_message(self, lead_id: str) -> str:
        """The message that re-sends an unsettled lead (its own key: a long value would turn the
        lead's small hash into a big one for good)."""
        return self._k("lead-msg", lead_id)

    @property
    def lead_prefix(self) -> str:
        """What `lead_outcome(lead_id)` puts before the id (for Lua that addresses leads)."""
        return self._k("lead", "")

    @property
    def lead_message_prefix(self) -> str:
        return self._k("lead-msg", "")

    @property
    def parked(self) -> str:
        """Every parked lead by resume time, as versions before issue 10 kept them; emptied into
        `parked_due` by worker/ledger/parking.py's recount."""
        return self._k("parked")

    def parked_due(self, reason: str) -> str:
        """Parked leads of one reason, scored by resume time: their count is the ZCARD."""
        return self._k("parked", "due", reason)

    @property
    def parked_recounted(self) -> str:
        """Set (with a TTL) when the parked sets were last checked lead by lead."""
        return self._k("parked", "recounted")

    @property
    def parked_index(self) -> str:
        return self._k("parked", "index")

    @property
    def dead_letters(self) -> str:
        return self._k("dlq")

    @property
    def dead_letter_index(self) -> str:
        return self._k("dlq", "index")

    @property
    def dead_letter_counts(self) -> str:
        """Dead letters by reason code, kept by worker/lua/dead_letter.lua."""
        return self._k("dlq", "counts")

    @property
    def dead_letter_reasons(self) -> str:
        """The reason code each dead letter is counted under (lead id -> code)."""
        return self._k("dlq", "reasons")

    @property
    def malformed(self) -> str:
        """Raw entries the worker could not read as a task message (worker/broker/guard.py)."""
        return self._k("dlq", "malformed")

    def lead_state_index(self, state: str) -> str:
        """Lead ids currently in `state` (in_flight, retrying), scored by when they got there."""
        return self._k("state", state)

    @property
    def custom_field_ids(self) -> str:
        """Cached custom field name -> id map (one GET for the whole fleet, not one per lead)."""
        return self._k("custom-fields", self.account)

    @property
    def stats(self) -> str:
        return self._k("stats")

    @property
    def delivered_minutes(self) -> str:
        """Leads delivered per minute (hash: epoch minute -> count) until folded into the
        `stats` hash's `delivered` (worker/ledger/delivered.py)."""
        return self._k("delivered", "minutes")

    @property
    def delivered_recent(self) -> str:
        """The sorted set that versions before the per-minute counts kept (one member per
        delivery for an hour); nothing writes it now, and the fold deletes it."""
        return self._k("delivered", "recent")

    @property
    def last_errors(self) -> str:
        return self._k("errors", "recent")

    # HTTP intake (worker/intake/).
    def intake_key(self, key_hash: str) -> str:
        """One API key's record (name, scope, revoked), found by the key's SHA-256."""
        return self._k("intake", "key", key_hash)

    @property
    def intake_key_names(self) -> str:
        """Hash name -> key SHA-256, for `leadsync intake keys list|revoke`."""
        return self._k("intake", "keys")

    def intake_rate(self, who: str) -> str:
        return self._k("intake", "rate", who)

    def intake_seen(self, lead_id: str) -> str:
        """Set when the intake queued `lead_id` (it queues once; GET reads it as `queued`)."""
        return self._k("intake", "seen", lead_id)

    def intake_answer(self, scope: str, key_hash: str) -> str:
        """The stored answer to an `Idempotency-Key` (per credential)."""
        return self._k("intake", "answer", scope, key_hash)

    def intake_signature(self, digest: str) -> str:
        """A webhook signature already used (replays are refused in the window)."""
        return self._k("intake", "sig", digest)

    @property
    def bulk(self) -> BulkKeys:
        """The bulk path's keys (worker/bulk/), under `<prefix>:bulk:<account>`."""
        return BulkKeys(self._k("bulk", self.account))

    @property
    def pattern(self) -> str:
        """Matches every key above (for tests and `purge` helpers)."""
        return self._k("*")


@dataclass(frozen=True)
class BulkKeys:
    """Keys of the bulk path (worker/bulk/), under the same prefix as every other key."""

    prefix: str

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
    def holding(self) -> str:  # list: backlog entries the stager took and has not dropped yet
        return f"{self.prefix}:holding"

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
