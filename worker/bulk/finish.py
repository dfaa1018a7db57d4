"""When the backlog is expected to be delivered (`leadsync status`), from quota and throughput.

Which path the backlog takes follows the worker: imports when LEADSYNC_BULK is `always`, or
`auto` with the backlog at LEADSYNC_BULK_THRESHOLD or single calls not finishing today; else
single calls.
- Single: two calls a lead (a consented one in the backlog costs one, so this is the longer
  reading) at the fleet rate (LEADSYNC_RATE_LIMIT_PER_S less what consented leads use), inside
  today's bulk budget (calls left less the reserve) and, on later days, the daily quota less a
  day's reserve.
- Imports: leads reach the staged set at the observed staging rate; a batch holds at most
  LEADSYNC_BULK_MAX_CONTACTS rows and LEADSYNC_BULK_MAX_BYTES at the observed row size, and one
  forms at least every LEADSYNC_BULK_MAX_WAIT_S while staging goes on; each import costs one
  call plus its observed polls out of the same budgets (batches the budget cannot pay today go
  at 00:00 UTC) and settles in the observed time.
Observed figures are the bulk counters (importer and batcher); until there are some, the
defaults below are used and named in `assumed`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from worker.base.settings import Settings
from worker.bulk.rows import ENVELOPE_BYTES
from worker.delivery.ratelimit import next_utc_midnight

DAY_S = 86_400.0
CALLS_PER_SINGLE_LEAD = 2  # GET then POST/PUT
# Until observed: staging ran at about 150 leads/s with one worker of 4 processes (README,
# the mixed-stream bulk run); a row with a name, company, phone and city is about 250 bytes;
# an import is taken to settle within a minute.
ASSUMED_STAGING_PER_S = 150.0
ASSUMED_ROW_BYTES = 250.0
ASSUMED_IMPORT_S = 60.0
MIN_STAGING_SAMPLE = 500  # a batch this large measures staging, not a trickle of arrivals


@dataclass(frozen=True)
class Observed:
    """What the bulk path has measured so far (None: not yet)."""

    staging_per_s: float | None = None
    row_bytes: float | None = None
    import_s: float | None = None
    polls_per_import: float | None = None

    @classmethod
    def from_counters(cls, counters: dict[str, str]) -> Observed:
        def number(name: str) -> float:
            return float(counters.get(name) or 0)

        imports, rows = number("imports"), number("rows_sent")
        settled = number("settled_imports")
        return cls(staging_per_s=number("staging_per_s") or None,
                   row_bytes=number("bytes_sent") / rows if rows else None,
                   import_s=number("settle_s") / settled if settled else None,
                   polls_per_import=number("polls") / imports if imports else None)


@dataclass(frozen=True)
class Finish:
    at: float | None  # epoch s; None: not at this quota (a day's calls all go to the reserve)
    utc_day: str | None  # the UTC date of `at`
    days_after_today: int | None  # 0: today (UTC)
    path: str  # none (nothing waits), single or bulk
    bound: str  # what sets the date: nothing, rate, staging, quota or never
    leads_today: int  # leads today's budget (and the rate) can carry on that path
    leads_per_day: int  # ... on a later, whole day
    per_s: float  # leads/s: the single rate, or the staging rate
    imports: int = 0  # imports the backlog needs (bulk)
    leads_per_import: int = 0
    calls_per_import: float = 0.0
    assumed: list[str] = field(default_factory=list)  # figures not observed yet


@dataclass(frozen=True)
class Budget:
    """The calls the backlog may use: today (after the reserve) and on a later whole day."""

    today: int
    per_day: int
    consented_per_s: float


def estimate_finish(settings: Settings, now: float, budget: Budget, *, backlog: int,
                    in_imports: int, single_ok: bool, observed: Observed) -> Finish:
    if backlog + in_imports == 0:
        return _finish(now, now, "none", "nothing", 0, 0, 0.0)
    bulk = settings.bulk == "always" or (settings.bulk == "auto" and (
        backlog >= settings.bulk_threshold or not single_ok))
    if bulk:
        return _bulk(settings, now, budget, backlog, observed)
    # Leads already in imports settle meanwhile (or after the single path is done).
    not_before = now + (observed.import_s or ASSUMED_IMPORT_S) if in_imports else now
    return _single(settings, now, budget, backlog, not_before)


def _single(settings: Settings, now: float, budget: Budget, backlog: int,
            not_before: float) -> Finish:
    per_s = max(settings.rate_limit_per_s - budget.consented_per_s, 0.01) / CALLS_PER_SINGLE_LEAD
    midnight = next_utc_midnight(now).timestamp()
    today = min(budget.today // CALLS_PER_SINGLE_LEAD, int(per_s * (midnight - now)))
    per_day = min(budget.per_day // CALLS_PER_SINGLE_LEAD, int(per_s * DAY_S))
    if backlog <= today:
        at: float | None = now + backlog / per_s
        bound = "rate"
    elif per_day <= 0:
        at, bound = None, "never"
    else:
        days = math.ceil((backlog - today) / per_day)
        last = backlog - today - (days - 1) * per_day  # leads on the last day
        at = midnight + (days - 1) * DAY_S + last / per_s
        bound = "quota" if budget.per_day // CALLS_PER_SINGLE_LEAD < per_s * DAY_S else "rate"
    if at is not None:
        at = max(at, not_before)
    return _finish(now, at, "single", bound, today, per_day, per_s)


def _bulk(settings: Settings, now: float, budget: Budget, backlog: int,
          observed: Observed) -> Finish:
    assumed = [name for name, value in (
        ("staging_per_s", observed.staging_per_s), ("row_bytes", observed.row_bytes),
        ("import_s", observed.import_s), ("polls_per_import", observed.polls_per_import))
        if value is None]
    staging = observed.staging_per_s or ASSUMED_STAGING_PER_S
    row = observed.row_bytes or ASSUMED_ROW_BYTES
    settle = observed.import_s or ASSUMED_IMPORT_S
    polls = settings.bulk_max_polls if observed.polls_per_import is None \
        else observed.polls_per_import
    per_import = max(min(settings.bulk_max_contacts,
                         int((settings.bulk_max_bytes - ENVELOPE_BYTES) // (row + 1))), 1)
    staged_by = now + backlog / staging
    # Batches form when full, or every LEADSYNC_BULK_MAX_WAIT_S while staging goes on.
    imports = max(math.ceil(backlog / per_import),
                  math.ceil((staged_by - now) / settings.bulk_max_wait_s)) if backlog else 0
    calls = 1 + polls
    today = int(budget.today // calls)
    per_day = int(budget.per_day // calls)
    last_sent = staged_by + settings.bulk_linger_s
    bound = "staging"
    if imports > today:
        if per_day <= 0:
            return _finish(now, None, "bulk", "never", today * per_import,
                           per_day * per_import, staging, imports, per_import, calls, assumed)
        days = math.ceil((imports - today) / per_day)
        midnight = next_utc_midnight(now).timestamp() + (days - 1) * DAY_S
        if midnight > last_sent:
            last_sent, bound = midnight, "quota"
    at = last_sent + settle if backlog else now + settle  # only imports under way: one settle
    return _finish(now, at, "bulk", bound, today * per_import, per_day * per_import, staging,
                   imports, per_import, calls, assumed)


def _finish(now: float, at: float | None, path: str, bound: str, today: int, per_day: int,
            per_s: float, imports: int = 0, per_import: int = 0, calls: float = 0.0,
            assumed: list[str] | None = None) -> Finish:
    day = None if at is None else time.strftime("%Y-%m-%d", time.gmtime(at))
    days = None if at is None else int(
        (at - (next_utc_midnight(now).timestamp() - DAY_S)) // DAY_S)
    return Finish(at=None if at is None else round(at, 1), utc_day=day, days_after_today=days,
                  path=path, bound=bound, leads_today=today, leads_per_day=per_day,
                  per_s=round(per_s, 3), imports=imports, leads_per_import=per_import,
                  calls_per_import=round(calls, 2), assumed=assumed or [])


def describe(finish: dict[str, object]) -> str:
    """`expected finish ...` for the status line."""
    at = finish.get("at")
    path = finish.get("path")
    if path == "none":
        return "nothing waiting"
    if not isinstance(at, int | float):
        return (f"not at this quota ({path}: a day's calls all go to the reserve; raise "
                "LEADSYNC_DAILY_QUOTA or lower the reserve)")
    days = finish.get("days_after_today")
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at))
    day = "today" if days == 0 else ("tomorrow" if days == 1 else f"in {days} days")
    if path == "single":
        how = (f"single calls, {CALLS_PER_SINGLE_LEAD} a lead at {finish['per_s']} leads/s: "
               f"{finish['leads_today']} leads today, {finish['leads_per_day']} a day after")
    else:
        how = (f"{finish['imports']} imports of up to {finish['leads_per_import']} leads, "
               f"{finish['calls_per_import']} calls each, staging {finish['per_s']} leads/s")
    assumed = finish.get("assumed") or []
    if isinstance(assumed, list) and assumed:
        how += f"; assumed until observed: {', '.join(map(str, assumed))}"
    return f"{when} ({day}; {finish['bound']}-bound; {how})"
