"""The pydantic-free path for plain dict leads (lead_fast) agrees with the model, lead by lead.

Whatever it accepts, the model accepts with the same id, the same JSON text and the same repr;
whatever the model refuses, it declines (so the reason always comes from the model). It must
also take the common leads, or producers lose the speed it exists for.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tests.leads.test_lead_corpus import CASES
from worker.base.errors import InvalidLeadError
from worker.leads.enqueue import prepare
from worker.leads.lead import Address, Lead
from worker.leads.lead_fast import (
    _ADDRESS_FIELDS,
    _FIELDS,
    _KINDS,
    plain_lead,
    plain_of,
    received_at_json,
)
from worker.leads.wire import redacted_argsrepr

NOW = datetime(2026, 11, 30, 1, 2, 3, 456789, tzinfo=UTC)
NOW_JSON = received_at_json(NOW)
LIST = "6f1b9a52-7c3e-4a2b-9f0e-1c2d3e4f5a6b"
AWKWARD = ['"q"', "back\\slash", "ctl\x01\x1f\x7f", "😀", "é", "</script>", "\u2028", "ü" * 60,
           "a\u00a0b", "\ud800", "\ud83d\ude00", " \t", "İ", "x" * 300, "line\nbreak", "1"]
VALUES: list[Any] = [*AWKWARD, None, 42, True, [], {}, "", "  ", "+1 202 555 0100"]


def _model(data: dict[str, Any]) -> Any:
    try:
        return prepare(data, now=NOW)
    except InvalidLeadError:
        return None


def check(data: dict[str, Any]) -> bool:
    """Assert the two paths agree on `data`; True when the fast one took it."""
    plain = plain_lead(data, NOW_JSON)
    lead = _model(data)
    if plain is None:
        return False
    assert lead is not None, f"fast path accepted a lead the model refuses: {data!r}"
    assert plain == plain_of(lead), data
    assert plain.json == lead.model_dump_json()
    assert plain.argsrepr == redacted_argsrepr([lead])
    return True


def test_it_knows_every_field_of_the_model() -> None:
    assert set(Lead.model_fields) == _FIELDS
    assert set(Address.model_fields) == _ADDRESS_FIELDS
    assert set(Address.model_json_schema()["properties"]["kind"]["enum"]) == _KINDS


def test_every_corpus_lead_agrees_and_most_valid_ones_take_the_fast_path() -> None:
    taken = valid = 0
    for case in CASES:
        took = check(case["input"])
        if "lead_id" in case["outcome"]:
            valid += 1
            taken += took
            if took:
                assert plain_lead(case["input"], NOW_JSON).lead_id == case["outcome"]["lead_id"]
        else:
            assert not took
    assert valid > 300 and taken >= 0.95 * valid, (taken, valid)  # all 414 when written


def _awkward_leads() -> list[dict[str, Any]]:
    leads = []
    for n, text in enumerate(AWKWARD):
        for lead_id in (None, f"crm-{n}"):
            lead = {"email": f" A{n}@Example.com ", "first_name": text, "last_name": text,
                    "company": text, "job_title": text, "phone": f"1{text}", "source": text,
                    "address": {"kind": "home", "street": text, "city": text, "state": text,
                                "postal_code": text, "country": text},
                    "custom_fields": {f"k{text}"[:50]: text, "b": "1", "a": text, "Z": ""},
                    "list_ids": [LIST, f" {LIST} ", LIST.upper()], "consent": bool(n % 2)}
            if lead_id:
                lead["lead_id"] = lead_id
            leads.append(lead)
    return leads


def test_awkward_text_agrees() -> None:
    leads = _awkward_leads()
    assert sum(check(lead) for lead in leads) > len(leads) // 3


@pytest.mark.parametrize("received_at", [
    None, NOW, datetime(2026, 1, 2, 3, 4, 5), datetime(2026, 1, 2, 3, 4, 5, 6),
    datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5))),
    "2026-11-30T10:00:00Z", "2026-11-30T10:00:00.5+02:00", "2026-11-30T10:00:00",
    "2026-11-30", "not a time", 1764496800, 1764496800.5, True,
])
def test_received_at_in_every_form_agrees(received_at: Any) -> None:
    check({"email": "a@example.com", "received_at": received_at})


def test_a_lead_with_everything_set_takes_the_fast_path() -> None:
    lead = {"version": 1, "lead_id": " crm-1 ", "email": "Jane@Example.com", "first_name": "J",
            "last_name": "R", "phone": "+1 202 555 0100", "company": "Acme", "job_title": "CTO",
            "address": {"kind": "other", "street": "s" * 300, "city": "Köln"},
            "custom_fields": {" score ": " 7 ", LIST: "x" * 300}, "list_ids": [LIST, LIST],
            "consent": True, "source": " web  form ", "received_at": NOW, "truncated": []}
    assert check(lead)
    assert plain_lead(lead, NOW_JSON).truncated  # street and one custom field were cut


def test_random_mutations_agree() -> None:
    """Each field of a full lead swapped for an awkward value, a few at a time."""
    rng = random.Random(20261130)
    base = _awkward_leads()[0] | {"first_name": "Ann", "phone": "+1 5", "source": "web"}
    fields = [*base, "version", "lead_id", "received_at", "truncated", "unknown"]
    taken = 0
    for _ in range(3000):
        data = json.loads(json.dumps(base))
        for name in rng.sample(fields, rng.randint(1, 3)):
            if name == "address":
                data[name] = {rng.choice(["kind", "street", "city", "planet"]): rng.choice(
                    [*VALUES, "home", "work"])}
            elif name == "custom_fields":
                data[name] = {rng.choice(AWKWARD)[:60]: rng.choice(VALUES) for _ in range(2)}
            elif name == "list_ids":
                data[name] = [rng.choice([LIST, LIST.upper(), "x", 7, " " + LIST])]
            else:
                data[name] = rng.choice([*VALUES, 1, 2, [], ["first_name"], LIST])
        taken += check(data)
    assert taken > 300
