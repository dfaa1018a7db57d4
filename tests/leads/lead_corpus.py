"""A seeded corpus of varied leads, valid and not, and what parse_lead made of each.

`lead_corpus.json` was recorded with the parser as it was before the enqueue speed work (pydantic
`model_dump` + sorted `json.dumps` for the id, the regex limits loop); `test_lead_corpus.py`
checks the current parser gives the same lead ids, the same normalized leads and the same
rejection messages. Re-record only on purpose (a deliberate change of the lead contract):

    PYTHONPATH=. python tests/leads/lead_corpus.py --record
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).with_name("lead_corpus.json")
SEED = 20261130
SIZE = 600

_TEXT = ["Ada", " Ada  Lovelace ", "Zoë", "  ", "", "Jean-Luc\tPicard", "李雷", "O'Brien",
         "a\u00a0b", "x" * 49, "y" * 50, "z" * 51, " w" * 40, "Ünïcödé " * 10, "tab\t\tend",
         "line\nbreak", "😀 emoji", "e\u0301", "ends with space ", "\u2003em space\u2003"]
_EMAILS = ["ada@example.com", " Ada@Example.COM ", "first.last+tag@sub.example.co.uk",
           "bad@", "no-at.example.com", "a..b@example.com", ".a@example.com", "a.@example.com",
           "x@y.z", "x@y.zz", "user@-bad.com", "user@good-host.io", "u" * 40 + "@example.com",
           "u" * 39 + "@ex.com", "İ@example.com", "ünï@example.com", "a@b.c0m", "", "   ",
           "o'neil@example.org", "a_b@example.museum"]
_PHONES = ["+1 202 555 0100", "(202) 555-0100", "no digits", "+44 " + "1" * 30, "1", " 5 ",
           "---", "+1-202-555-0100 ext. 1234 and some more"]
_UUIDS = ["0f8fad5b-d9cb-469f-a165-70867728950e", "0F8FAD5B-D9CB-469F-A165-70867728950E",
          "{0f8fad5b-d9cb-469f-a165-70867728950e}", "0f8fad5bd9cb469fa16570867728950e",
          "urn:uuid:7c9e6679-7425-40de-944b-e07fc1f90ae7", " 7c9e6679-7425-40de-944b-e07fc1f90ae7 ",
          "not-a-uuid", "", "c2a0e0a4-7e7a-4b1a-9e3b-4f0a7c1d2e3f"]
_KEYS = ["lead_score", " lead_score", "Lead Score", "k" * 50, "k" * 51, "", "  ",
         "0f8fad5b-d9cb-469f-a165-70867728950e", "0F8FAD5B-D9CB-469F-A165-70867728950E", "ключ"]
_TIMES = ["2026-11-30T10:00:00Z", "2026-11-30T10:00:00+02:00", "2026-11-30T10:00:00",
          "2026-11-30", "not a time", 1764496800, None]
_SOURCES = ["webform", " google-ads ", "s" * 100, "s" * 101, "", "  spaced   source  "]


def _maybe(rng: random.Random, p: float = 0.5) -> bool:
    return rng.random() < p


def _text(rng: random.Random, clean: bool = False) -> Any:
    pick = rng.random() * (0.9 if clean else 1.0)
    if pick < 0.85:
        return rng.choice(_TEXT)
    if pick < 0.9:
        return None
    if pick < 0.95:
        return 42  # not a string
    return "w" * rng.randint(20, 300)


def _lead(rng: random.Random, n: int) -> dict[str, Any]:
    if n % 3:  # two leads in three only use values that should pass, so most ids are checked
        return _clean_lead(rng, n)
    lead: dict[str, Any] = {"email": rng.choice(_EMAILS) if _maybe(rng, 0.8)
                            else f"user{n}@example.com"}
    for name in ("first_name", "last_name", "company", "job_title"):
        if _maybe(rng, 0.6):
            lead[name] = _text(rng)
    if _maybe(rng, 0.5):
        lead["phone"] = rng.choice(_PHONES)
    if _maybe(rng, 0.4):
        address: dict[str, Any] = {}
        if _maybe(rng, 0.3):
            address["kind"] = rng.choice(["home", "work", "other", "office", " home"])
        for name in ("street", "city", "state", "postal_code", "country"):
            if _maybe(rng, 0.5):
                address[name] = ("s" * rng.randint(200, 300)) if name == "street" and _maybe(
                    rng, 0.2) else _text(rng)
        if _maybe(rng, 0.03):
            address["planet"] = "Mars"
        lead["address"] = address
    if _maybe(rng, 0.4):
        fields: dict[str, Any] = {}
        for _ in range(rng.choice([0, 1, 2, 3, 26]) if _maybe(rng, 0.95) else 30):
            key = rng.choice(_KEYS) if _maybe(rng, 0.3) else f"field_{rng.randint(0, 40)}"
            fields[key] = rng.choice(["v", " padded ", "x" * 256, "x" * 255, "", 7, "é" * 300])
        lead["custom_fields"] = fields
    if _maybe(rng, 0.3):
        count = rng.choice([0, 1, 2, 3, 51])
        lead["list_ids"] = [rng.choice(_UUIDS) for _ in range(count)]
    if _maybe(rng, 0.4):
        lead["consent"] = rng.choice([True, False, "true", 1, None])
    if _maybe(rng, 0.3):
        lead["source"] = rng.choice(_SOURCES)
    if _maybe(rng, 0.3):
        lead["received_at"] = rng.choice(_TIMES)
    if _maybe(rng, 0.2):
        lead["lead_id"] = rng.choice(["crm-123", " crm-456 ", "has space", "", "x" * 128,
                                      "x" * 129, "é-accent", "ld_deadbeef"])
    if _maybe(rng, 0.1):
        lead["truncated"] = rng.choice([[], ["first_name"], ["company", "phone"], "nope"])
    if _maybe(rng, 0.05):
        lead["version"] = rng.choice([1, 2, "1", True])
    if _maybe(rng, 0.03):
        lead["unknown_field"] = 1
    return lead


def _clean_lead(rng: random.Random, n: int) -> dict[str, Any]:
    good_emails = [e for e in _EMAILS if "@" in e and ".." not in e and not e.startswith(".")
                   and "-bad" not in e and len(e.strip()) <= 50 and ".@" not in e
                   and "ü" not in e and "İ" not in e and "c0m" not in e and "y.z" not in e]
    lead: dict[str, Any] = {"email": rng.choice(good_emails) if _maybe(rng, 0.5)
                            else f"user{n}@example.com"}
    for name in ("first_name", "last_name", "company", "job_title"):
        if _maybe(rng, 0.6):
            lead[name] = _text(rng, clean=True)
    if _maybe(rng, 0.5):
        lead["phone"] = rng.choice([p for p in _PHONES if any(c.isdigit() for c in p)])
    if _maybe(rng, 0.5):
        lead["address"] = {name: ("s" * rng.randint(200, 300) if name == "street"
                                  else _text(rng, clean=True))
                           for name in ("street", "city", "state", "postal_code", "country")
                           if _maybe(rng, 0.5)}
        if _maybe(rng, 0.3):
            lead["address"]["kind"] = rng.choice(["home", "work", "other"])
    if _maybe(rng, 0.5):
        lead["custom_fields"] = {
            rng.choice(["lead_score", " padded key ", "0F8FAD5B-D9CB-469F-A165-70867728950E",
                        f"f{i}", "ключ", "Lead Score"]): rng.choice(
                ["v", " padded ", "x" * 256, "", "é" * 300, "  a  b  "])
            for i in range(rng.randint(0, 5))}
    if _maybe(rng, 0.4):
        lead["list_ids"] = [rng.choice([u for u in _UUIDS if u.strip() not in ("", "not-a-uuid")])
                            for _ in range(rng.randint(0, 4))]
    if _maybe(rng, 0.5):
        lead["consent"] = rng.choice([True, False])
    if _maybe(rng, 0.4):
        lead["source"] = rng.choice([s for s in _SOURCES if len(s) <= 100])
    if _maybe(rng, 0.5):
        lead["received_at"] = rng.choice(_TIMES[:3] + _TIMES[5:])
    if _maybe(rng, 0.15):
        lead["lead_id"] = rng.choice(["crm-123", " crm-456 ", "", "x" * 128, "ld_deadbeef"])
    if _maybe(rng, 0.1):
        lead["truncated"] = rng.choice([[], ["first_name"], ["company", "phone"]])
    if _maybe(rng, 0.1):
        lead["version"] = 1
    return lead


def corpus() -> list[dict[str, Any]]:
    rng = random.Random(SEED)
    return [_lead(rng, n) for n in range(SIZE)]


def outcome(data: object) -> dict[str, Any]:
    """What parse_lead made of one input: the lead as it travels, or the rejection."""
    from worker.base.errors import InvalidLeadError
    from worker.leads.lead import parse_lead

    try:
        lead = parse_lead(data)
    except InvalidLeadError as exc:
        return {"error": str(exc), "field": exc.field}
    return {"lead_id": lead.lead_id, "lead": lead.model_dump_json()}


def record() -> None:
    items = corpus()
    cases = [{"input": item, "outcome": outcome(item)} for item in items]
    FIXTURE.write_text(json.dumps(cases, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    valid = sum("lead_id" in case["outcome"] for case in cases)
    print(f"recorded {len(cases)} cases ({valid} valid) in {FIXTURE}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit(__doc__)
    record()
