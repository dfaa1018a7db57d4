"""Python producers: validate a lead and LPUSH the same plain-JSON message a raw producer would.

No Celery client is involved, so a web app can enqueue leads with only Redis. Rejected rows are
reported with their index and a redacted reason; the batch never stops at the first bad row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis as redis_lib

from worker.base.errors import InvalidLeadError, RedisUnavailableError
from worker.base.names import LEADS_QUEUE
from worker.base.priority import list_for, priority_for
from worker.base.redaction import scrub
from worker.base.settings import Settings, get_settings
from worker.leads.lead import Lead, parse_lead
from worker.leads.lead_fast import PlainLead, plain_lead, plain_of, received_at_json
from worker.leads.push import BatchPusher
from worker.leads.wire import lead_message, random_id_pairs

DEFAULT_BATCH_SIZE = 1_000
_REDIS_ERRORS = (redis_lib.ConnectionError, redis_lib.TimeoutError, redis_lib.ResponseError)


@dataclass(frozen=True)
class SourceRow:
    """An item read from a file: `number` is its line, `error` set when it could not be read."""

    number: int
    data: object = None
    error: str | None = None


@dataclass(frozen=True)
class Rejection:
    """One row that was not enqueued: its index (or line number) and why."""

    index: int
    reason: str
    field: str | None = None


@dataclass
class EnqueueReport:
    """What `enqueue_leads` did: counts, the ids it pushed, and every rejection."""

    enqueued: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    lead_ids: list[str] = field(default_factory=list)
    truncated: int = 0  # leads that had a field cut to Constant Contact's limits

    @property
    def rejected_count(self) -> int:
        return len(self.rejected)

    @property
    def total(self) -> int:
        return self.enqueued + self.rejected_count


def redis_location(client: redis_lib.Redis) -> str:
    """`host:port/db` of a client, never its password."""
    kwargs = client.connection_pool.connection_kwargs
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"


def _client(settings: Settings | None, client: redis_lib.Redis | None) -> redis_lib.Redis:
    if client is not None:
        return client
    from worker.base.redis_conn import get_redis

    return get_redis(settings or get_settings())


def _unavailable(client: redis_lib.Redis, exc: Exception, done: int) -> RedisUnavailableError:
    where = redis_location(client)
    pushed = f"; {done} lead(s) were enqueued before the failure" if done else ""
    return RedisUnavailableError(
        f"Redis unavailable at {where}: {scrub(type(exc).__name__)}{pushed}"
    )


def prepare(lead_or_dict: object, *, now: datetime | None = None) -> Lead:
    """Validate and stamp `received_at` (now, UTC) when the producer gave none."""
    if isinstance(lead_or_dict, dict) and lead_or_dict.get("received_at") is None:
        # Stamped before validation, so the lead is validated once (a copy afterwards costs
        # as much again); the lead_id leaves received_at out, so it is the same either way.
        lead_or_dict = {**lead_or_dict, "received_at": now or datetime.now(UTC)}
    lead = parse_lead(lead_or_dict)
    if lead.received_at is None:
        lead = lead.model_copy(update={"received_at": now or datetime.now(UTC)})
    return lead


def ready_lead(data: object, now: datetime, now_json: str) -> PlainLead:
    """What the message needs of one lead: plain dicts by lead_fast, the rest by the model.

    Raises InvalidLeadError: lead_fast only ever accepts, so every reason is the model's.
    """
    if isinstance(data, dict):
        plain = plain_lead(data, now_json)
        if plain is not None:
            return plain
    return plain_of(prepare(data, now=now))


def batch_messages(batch: list[PlainLead]) -> list[str]:
    return [lead_message(lead.json, lead.argsrepr, task_id, tag,
                         priority=priority_for(lead.consent))
            for lead, (task_id, tag) in zip(batch, random_id_pairs(len(batch)), strict=True)]


def by_list(batch: list[PlainLead], messages: list[str]) -> list[tuple[str, list[str]]]:
    """The batch's messages grouped by the priority list each goes on, in order."""
    groups: dict[str, list[str]] = {}
    for lead, message in zip(batch, messages, strict=True):
        groups.setdefault(list_for(LEADS_QUEUE, priority_for(lead.consent)), []).append(message)
    return list(groups.items())


def enqueue_lead(
    lead_or_dict: object,
    *,
    settings: Settings | None = None,
    redis: redis_lib.Redis | None = None,
) -> str:
    """Queue one lead for `leadsync.sync_lead`; returns its lead_id.

    Raises InvalidLeadError (with the reason and field) or RedisUnavailableError.
    """
    now = datetime.now(UTC)
    lead = ready_lead(lead_or_dict, now, received_at_json(now))
    client = _client(settings, redis)
    try:
        client.lpush(list_for(LEADS_QUEUE, priority_for(lead.consent)), *batch_messages([lead]))
    except _REDIS_ERRORS as exc:
        raise _unavailable(client, exc, 0) from None
    return lead.lead_id


def enqueue_leads(
    items: Iterable[object],
    *,
    settings: Settings | None = None,
    redis: redis_lib.Redis | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[EnqueueReport], None] | None = None,
) -> EnqueueReport:
    """Queue many leads, one LPUSH of many values per batch; bad rows are reported, not fatal.

    Items are leads, dicts, or `SourceRow`s (then the line number is the reported index).
    `progress` is called after every batch. A Redis failure raises RedisUnavailableError whose
    message says how many leads were already pushed (re-running is safe: lead_ids are
    deterministic and delivery is idempotent per lead_id). A batch is one LPUSH per priority
    list (consented leads on their own, worker/base/priority.py; two lists in one MULTI): each
    LPUSH pushes its values left to right, so each list is read in the order given, and a
    batch is pushed whole or not at all and counted once Redis answered it, so that count is
    exact. Redis stores each batch while the next one is encoded (`push.BatchPusher`).
    """
    client = _client(settings, redis)
    report = EnqueueReport()
    batch: list[PlainLead] = []
    sent: list[PlainLead] = []  # the batch Redis has not answered yet
    now = datetime.now(UTC)
    now_json = received_at_json(now)  # one stamp for the run, written once

    def answered() -> None:
        if pusher.answer() is None:
            return
        report.enqueued += len(sent)
        report.lead_ids.extend(lead.lead_id for lead in sent)
        sent.clear()
        if progress is not None:
            progress(report)

    def flush() -> None:
        groups = by_list(batch, batch_messages(batch))  # built while Redis stores the last one
        answered()
        pusher.send_groups(groups)
        sent.extend(batch)
        batch.clear()

    try:
        with BatchPusher(client, LEADS_QUEUE) as pusher:
            for position, item in enumerate(items):
                index, data = position, item
                if isinstance(item, SourceRow):
                    index, data = item.number, item.data
                    if item.error is not None:
                        report.rejected.append(Rejection(index, scrub(item.error)))
                        continue
                try:
                    lead = ready_lead(data, now, now_json)
                except InvalidLeadError as exc:
                    report.rejected.append(Rejection(index, scrub(str(exc)), exc.field))
                    continue
                if lead.truncated:
                    report.truncated += 1
                batch.append(lead)
                if len(batch) >= batch_size:
                    flush()
            if batch:
                flush()
            answered()
    except _REDIS_ERRORS as exc:
        raise _unavailable(client, exc, report.enqueued) from None
    return report
