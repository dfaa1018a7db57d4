"""Text with a lone surrogate is an invalid lead, whether or not the producer gave a lead_id.

`"\\ud800"` is valid JSON and json.loads returns it as a lone surrogate, which has no UTF-8
form. With a lead_id given (no id to derive), the parser used to accept such a lead in the
fields without a length constraint; the worker then failed to keep its message (encode_message)
outside every classified path, Celery acknowledged the failed task, and the message was gone
with no outcome (the poison fuzz, seed 20261130: six `swap` mutants lost). Now the parser
refuses it, so the task dead-letters it with the reason like any other invalid lead.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fixtures.mutations import mutants
from worker.base.errors import InvalidLeadError
from worker.leads.lead import ADDRESS_LIMITS, TEXT_LIMITS, parse_lead
from worker.leads.wire import encode_message, lead_from_task_args

LONE = "\ud800"
GIVEN_ID = "ld_60638ed0363cf7016834e3727ce248c4"


def _with(label: str, text: str) -> dict[str, Any]:
    data: dict[str, Any] = {"email": "a@example.com", "first_name": "Ann"}
    if label.startswith("address."):
        data["address"] = {label.removeprefix("address."): text}
    elif label == "custom_fields":
        data["custom_fields"] = {"colour": text}
    else:
        data[label] = text
    return data


LABELS = [*sorted(TEXT_LIMITS), *(f"address.{name}" for name in sorted(ADDRESS_LIMITS)),
          "custom_fields"]


@pytest.mark.parametrize("lead_id", [GIVEN_ID, None], ids=["lead_id-given", "lead_id-derived"])
@pytest.mark.parametrize("label", LABELS)
def test_a_lone_surrogate_rejects_the_lead_naming_the_field(label: str,
                                                            lead_id: str | None) -> None:
    data = _with(label, f"{LONE}5550100 private")  # digits, so `phone` fails only on this
    if lead_id:
        data["lead_id"] = lead_id
    with pytest.raises(InvalidLeadError) as caught:
        parse_lead(json.dumps(data))  # as a producer sends it: the JSON escape `\ud800`
    assert caught.value.field == label
    assert str(caught.value) == f"{label}: not valid Unicode text (a lone surrogate)"
    assert "private" not in str(caught.value) and "555" not in str(caught.value)


def test_a_lone_surrogate_in_a_custom_field_key_rejects_the_lead() -> None:
    with pytest.raises(InvalidLeadError, match=r"^custom_fields: not valid Unicode"):
        parse_lead({"email": "a@example.com", "lead_id": GIVEN_ID,
                    "custom_fields": {f"k{LONE}": "v"}})


def test_paired_surrogates_and_other_unicode_stay_valid() -> None:
    lead = parse_lead(json.dumps({"email": "a@example.com", "lead_id": GIVEN_ID,
                                  "first_name": "\ud83d\ude00 Zoë", "last_name": "Łódź 東京",
                                  "custom_fields": {"café": "naïve"}}))
    assert lead.first_name == "\U0001f600 Zoë" and lead.last_name == "Łódź 東京"
    assert json.loads(json.loads(encode_message(lead))["body"])[0][0]["custom_fields"] == {
        "café": "naïve"}


def test_every_lead_the_parser_accepts_can_be_kept_as_a_message() -> None:
    """Over the poison fuzz's swap and flip mutants: the task's arguments are either an invalid
    lead (a dead letter) or a lead whose message the worker can write (nothing in between)."""
    accepted = refused = 0
    for mutant in mutants(20261130, plan={"swap": 1600, "flip": 1400}):
        try:
            body = json.loads(json.loads(mutant.raw)["body"])
            args, kwargs = body[0], body[1]
        except (ValueError, KeyError, TypeError, IndexError):
            continue  # not a task message: the guard's malformed list, not the parser
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            continue
        try:
            lead = lead_from_task_args(args, kwargs)
        except InvalidLeadError:
            refused += 1
            continue
        encode_message(lead, task_id=mutant.marker)  # raised for six leads before the fix
        accepted += 1
    assert accepted > 100 and refused > 100  # both sides of the line were exercised
