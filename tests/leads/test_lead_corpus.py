"""The parser gives the same results as before its speed work, lead by lead.

`lead_corpus.json` holds 600 varied leads (whitespace, unicode, over-limit text, UUID and name
custom field keys, list ids in every UUID spelling, times with and without offsets, and many
malformed ones) with what the previous parser made of each: the lead id, the normalized lead
as it travels, or the InvalidLeadError message and field. The ids are the idempotency keys of
leads already queued or delivered, so any difference is a bug, not a refresh of the fixture.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from typing import Any

import pytest

from tests.leads.lead_corpus import FIXTURE, corpus, outcome
from worker.base.errors import InvalidLeadError
from worker.leads.lead import Lead, _clean_text, derive_lead_id, parse_lead

CASES: list[dict[str, Any]] = json.loads(FIXTURE.read_text(encoding="utf-8"))


def test_the_fixture_is_the_seeded_corpus() -> None:
    assert [case["input"] for case in CASES] == json.loads(json.dumps(corpus()))


def test_the_corpus_covers_ids_truncation_and_rejections() -> None:
    valid = [case for case in CASES if "lead_id" in case["outcome"]]
    derived = [case for case in valid if not str(case["input"].get("lead_id", "")).strip()]
    cut = [case for case in valid if '"truncated":["' in case["outcome"]["lead"]]
    assert len(valid) > 300 and len(derived) > 250 and len(cut) > 100
    assert len(CASES) - len(valid) > 100


@pytest.mark.parametrize("start", range(0, len(CASES), 100))
def test_same_ids_leads_and_reasons_as_the_previous_parser(start: int) -> None:
    for number, case in enumerate(CASES[start:start + 100], start):
        assert outcome(case["input"]) == case["outcome"], f"corpus case {number}"


def test_whitespace_is_collapsed_exactly_as_the_regex_did() -> None:
    # The previous parser used re.sub(r"\s+", " ", text).strip(); the new one str.split().
    every_char = "".join(map(chr, range(0x110000)))
    spaces = "".join(re.findall(r"\s", every_char))
    assert spaces == "".join(char for char in every_char if char.isspace())
    text = f"{spaces}a{spaces}b c\u200bd{spaces}"
    assert _clean_text(text) == re.sub(r"\s+", " ", text).strip() == "a b c\u200bd"
    assert _clean_text(spaces) is None


def _previous_derive_lead_id(lead: Lead) -> str:
    """derive_lead_id as it was before the speed work (pydantic dump, sorted json.dumps)."""
    content = lead.model_dump(mode="json", exclude={"lead_id", "received_at", "truncated"})
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "ld_" + hashlib.sha256(canonical.encode()).hexdigest()[:32]


def test_the_id_is_the_sorted_json_dumps_one_for_awkward_text() -> None:
    awkward = ['"q"', "back\\slash", "ctl\x01\x1f", "😀", "é", "</script>", "\u2028", "ü" * 50]
    leads = [parse_lead(case["input"]) for case in CASES if "lead_id" in case["outcome"]]
    for n, text in enumerate(awkward):
        leads.append(parse_lead({
            "email": f"a{n}@example.com", "first_name": text, "company": text, "phone": f"1{text}",
            "address": {"kind": "home", "city": text, "street": text},
            "custom_fields": {f"k{text}"[:50]: text, "b": "1", "a": text, "Z": "", "0": text},
            "list_ids": ["6f1b9a52-7c3e-4a2b-9f0e-1c2d3e4f5a6b"], "source": text,
            "consent": bool(n % 2)}))
    assert len(leads) > 400
    for lead in leads:
        assert derive_lead_id(lead) == _previous_derive_lead_id(lead)


UUID_SPELLINGS = ["0f8fad5b-d9cb-469f-a165-70867728950e", "0F8FAD5B-D9CB-469F-A165-70867728950E",
                  "{0f8fad5b-d9cb-469f-a165-70867728950e}", "0f8fad5bd9cb469fa16570867728950e",
                  "urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e",
                  "0f8fad5bd9cb469fa16570867728950",
                  "+f8fad5bd9cb469fa16570867728950e", "0f8f_ad5bd9cb469fa16570867728950e",
                  "0f8fad5b-d9cb-469f-a165-70867728950", "g" * 32, "short-name", "a" * 50]


@pytest.mark.parametrize("spelling", UUID_SPELLINGS)
def test_uuid_spellings_normalize_as_uuid_uuid_does(spelling: str) -> None:
    try:
        expected: str | None = str(uuid.UUID(spelling))
    except ValueError:
        expected = None
    lead = parse_lead({"email": "a@example.com", "custom_fields": {spelling: "v"}})
    assert list(lead.custom_fields) == [expected or spelling]  # a name when not a UUID
    if expected is None:
        with pytest.raises(InvalidLeadError, match=r"^list_ids: item 0 is not a list UUID$"):
            parse_lead({"email": "a@example.com", "list_ids": [spelling]})
    else:
        listed = parse_lead({"email": "a@example.com", "list_ids": [f" {spelling} ", expected]})
        assert listed.list_ids == [expected]
