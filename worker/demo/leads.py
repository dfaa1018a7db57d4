"""The demo's sample leads: a seeded mix of valid, duplicate, updated and invalid leads.

Split from worker.demo.demo (which re-exports `sample_leads` and `LeadMix`); the mix says what the
sample holds, so the demo's summary can be checked against it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any


@dataclass
class LeadMix:
    """What the sample contains, so the summary can be checked against it."""

    valid_unique: int = 0  # distinct valid leads (distinct lead_ids) that reach the worker
    duplicates: int = 0  # exact re-sends: same lead_id, delivered once
    updates: int = 0  # same email, new data: Constant Contact answers "updated"
    invalid_rejected: int = 0  # refused by worker.leads.enqueue before reaching Redis
    invalid_unknown_list: int = 0  # valid shape, but a list the account lacks: dead letter



def sample_leads(total: int, seed: int = 7) -> tuple[list[dict[str, Any]], LeadMix]:
    """`total` sample rows, in every block of 25: 19 valid, 1 exact duplicate, 1 update of an
    earlier lead's email, 2 invalid (refused at enqueue), 1 naming a list that does not exist."""
    rng = random.Random(seed)
    mix = LeadMix()
    rows: list[dict[str, Any]] = []
    firsts = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Frances", "Donald", "Radia"]
    lasts = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Allen", "Knuth"]
    companies = ["Acme", "Initech", "Globex", "Umbrella", "Hooli", "Stark", "Wayne", None]
    unknown_list = "00000000-0000-4000-8000-00000000dead"
    originals: list[dict[str, Any]] = []  # valid first sends: the only rows re-sent or updated
    for i in range(total):
        kind = i % 25
        if kind == 11 and originals:
            rows.append(dict(rng.choice(originals)))  # exact re-send: same lead_id
            mix.duplicates += 1
        elif kind == 5 and originals:
            base = dict(rng.choice(originals))
            base["job_title"] = f"Buyer #{i}"  # new data, same email: a new lead_id, "updated"
            rows.append(base)
            mix.updates += 1
        elif kind in (17, 23):
            rows.append({"email": f"not-an-email-{i}", "first_name": "Broken"})
            mix.invalid_rejected += 1
        elif kind == 19:
            rows.append({"email": f"lost.list.{i}@example.com", "list_ids": [unknown_list],
                         "consent": True, "source": "demo"})
            mix.invalid_unknown_list += 1
        else:
            first, last = rng.choice(firsts), rng.choice(lasts)
            row: dict[str, Any] = {
                "email": f"{first}.{last}.{i}@example.com".lower(),
                "first_name": first, "last_name": last,
                "phone": f"+1 555 {rng.randrange(100, 999)} {rng.randrange(1000, 9999)}",
                "consent": True, "source": "demo",
            }
            company = rng.choice(companies)
            if company:
                row["company"] = company
            rows.append(row)
            originals.append(row)
            mix.valid_unique += 1
    mix.valid_unique += mix.updates  # an update is its own lead (new lead_id), answered 200
    return rows, mix
