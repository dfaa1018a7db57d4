"""The checked-in JSON Schema is what the model says, and it describes what the worker accepts.

Regenerate after changing worker/leads/lead.py:
    leadsync schema > worker/schema/lead.v1.schema.json
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from worker.base.errors import InvalidLeadError
from worker.cli import main
from worker.cli.schema_cmd import CHECKED_IN
from worker.leads.lead import Lead, parse_lead


def test_checked_in_schema_equals_the_model() -> None:
    checked_in = json.loads(CHECKED_IN.read_text(encoding="utf-8"))
    assert checked_in == Lead.model_json_schema(), (
        "worker/schema/lead.v1.schema.json is stale: run "
        "`leadsync schema > worker/schema/lead.v1.schema.json`"
    )


def test_leadsync_schema_prints_the_checked_in_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    assert capsys.readouterr().out == CHECKED_IN.read_text(encoding="utf-8")


def test_schema_states_the_limits_rule() -> None:
    schema = Lead.model_json_schema()
    assert "Limits rule" in schema["description"]
    assert "truncated" in schema["description"]
    assert schema["required"] == ["email"]


def test_schema_accepts_what_the_worker_accepts(lead_data: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(Lead.model_json_schema())
    overlong = {**lead_data, "first_name": "x" * 80}  # cut by the worker, so valid here too
    for data in (lead_data, overlong, parse_lead(overlong).to_json_dict()):
        validator.validate(data)
        parse_lead(data)


@pytest.mark.parametrize(
    "change",
    [{"email": None}, {"unknown": 1}, {"consent": "yes"}, {"email": "a" * 60 + "@example.com"}],
)
def test_schema_rejects_what_the_worker_rejects(
    lead_data: dict[str, Any], change: dict[str, Any]
) -> None:
    data = {**lead_data, **change}
    if change.get("email", "") is None:
        del data["email"]
    assert not jsonschema.Draft202012Validator(Lead.model_json_schema()).is_valid(data)
    with pytest.raises(InvalidLeadError, match=r"^(email|unknown|consent):"):
        parse_lead(data)
