"""The lead model: normalization, the one limits rule, deterministic lead_id, and clear
rejections (parse_lead / wire parsing) that never echo personal data."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from worker.base.errors import InvalidLeadError
from worker.leads.lead import ADDRESS_LIMITS, TEXT_LIMITS, parse_lead
from worker.leads.wire import build_message, lead_from_task_args, parse_message

LIST_A = "0c4a6c36-3a5b-11ee-8c55-fa163e56c9b0"
CF_UUID = "6B1A5C1E-0000-4000-8000-00000000ABCD"


def test_normalization(lead_data: dict[str, Any]) -> None:
    lead = parse_lead(
        {
            **lead_data,
            "email": "  Jane.Roe@EXAMPLE.com \n",
            "first_name": "  Jane   Mary ",
            "company": "   ",
            "list_ids": [LIST_A.upper(), f" {LIST_A} "],
            "custom_fields": {f" {CF_UUID} ": " blue ", " color": "red"},
            "received_at": "2024-05-01T14:00:00+02:00",
        }
    )
    assert lead.email == "jane.roe@example.com"
    assert lead.first_name == "Jane Mary"
    assert lead.company is None  # blank means "not given"
    assert lead.list_ids == [LIST_A]  # canonical form, duplicates merged
    assert lead.custom_fields == {CF_UUID.lower(): "blue", "color": "red"}
    assert lead.received_at == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert lead.truncated == []


def test_naive_received_at_is_taken_as_utc(lead_data: dict[str, Any]) -> None:
    lead = parse_lead({**lead_data, "received_at": "2024-05-01T12:00:00"})
    assert lead.received_at == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def test_defaults_for_a_minimal_lead() -> None:
    lead = parse_lead({"email": "a@example.com"})
    assert (lead.version, lead.consent, lead.list_ids, lead.custom_fields) == (1, False, [], {})
    assert lead.address is None and lead.received_at is None


@pytest.mark.parametrize("field", sorted(TEXT_LIMITS))
def test_free_text_is_cut_at_its_limit_and_recorded(field: str) -> None:
    limit = TEXT_LIMITS[field]
    text = "7" * (limit + 5)  # digits, so `phone` stays valid
    at_limit = parse_lead({"email": "a@example.com", field: text[:limit]})
    assert getattr(at_limit, field) == text[:limit] and at_limit.truncated == []
    over = parse_lead({"email": "a@example.com", field: text})
    assert getattr(over, field) == text[:limit]
    assert over.truncated == [field]


@pytest.mark.parametrize("field", sorted(ADDRESS_LIMITS))
def test_address_fields_are_cut_and_recorded(field: str) -> None:
    limit = ADDRESS_LIMITS[field]
    lead = parse_lead({"email": "a@example.com", "address": {field: "x" * (limit + 1)}})
    assert getattr(lead.address, field) == "x" * limit
    assert lead.truncated == [f"address.{field}"]


def test_custom_field_value_is_cut_at_255_and_recorded() -> None:
    lead = parse_lead({"email": "a@example.com", "custom_fields": {"notes": "n" * 300}})
    assert lead.custom_fields["notes"] == "n" * 255
    assert lead.truncated == ["custom_fields.notes"]


def test_cutting_is_idempotent_across_a_round_trip() -> None:
    first = parse_lead({"email": "a@example.com", "first_name": "f" * 80, "company": "c" * 60})
    again = parse_lead(first.to_json_dict())
    assert again == first
    assert again.truncated == ["first_name", "company"]


@pytest.mark.parametrize(
    ("data", "field", "reason"),
    [
        ({"email": "a" * 40 + "@example.com"}, "email", "longer than 50"),
        ({"email": "a@example.com", "list_ids": [LIST_A[:-2] + f"{i:02x}" for i in range(51)]},
         "list_ids", "more than 50"),
        ({"email": "a@example.com", "custom_fields": {f"f{i}": "v" for i in range(26)}},
         "custom_fields", "more than 25"),
        ({"email": "a@example.com", "lead_id": "x" * 129}, "lead_id", "longer than 128"),
        ({"email": "a@example.com", "custom_fields": {"k" * 51: "v"}}, "custom_fields", "50"),
        ({"email": "a@example.com", "source": "s" * 101}, "source", "longer than 100"),
    ],
    ids=["email", "list_ids", "custom_fields", "lead_id", "custom_field_key", "source"],
)  # fmt: skip
def test_identifiers_and_structure_are_never_cut(
    data: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(InvalidLeadError) as caught:
        parse_lead(data)
    assert caught.value.field == field
    assert reason in str(caught.value)


def test_exactly_at_the_structural_limits_is_accepted() -> None:
    lead = parse_lead(
        {
            "email": "a" * 38 + "@example.com",  # 50 characters
            "list_ids": [LIST_A[:-2] + f"{i:02x}" for i in range(50)],
            "custom_fields": {f"f{i}": "v" for i in range(25)},
        }
    )
    assert len(lead.email) == 50 and len(lead.list_ids) == 50 and len(lead.custom_fields) == 25


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "email"),
        ({"email": None}, "email"),
        ({"email": "jane.roe"}, "email"),
        ({"email": "jane..roe@example.com"}, "email"),
        ({"email": 42}, "email"),
        ({"email": "a@example.com", "first_name": 7}, "first_name"),
        ({"email": "a@example.com", "phone": "call me"}, "phone"),
        ({"email": "a@example.com", "consent": "yes"}, "consent"),
        ({"email": "a@example.com", "list_ids": "abc"}, "list_ids"),
        ({"email": "a@example.com", "list_ids": ["not-a-uuid"]}, "list_ids"),
        ({"email": "a@example.com", "custom_fields": {"a": 1}}, "custom_fields.a"),
        ({"email": "a@example.com", "custom_fields": {"a": "1", " a ": "2"}}, "custom_fields"),
        ({"email": "a@example.com", "address": {"kind": "mars"}}, "address.kind"),
        ({"email": "a@example.com", "received_at": "yesterday"}, "received_at"),
        ({"email": "a@example.com", "lead_id": "has space"}, "lead_id"),
        ({"email": "a@example.com", "emial": "typo@example.com"}, "emial"),
        ({"email": "a@example.com", "version": 2}, "version"),
    ],
)
def test_malformed_values_are_rejected_naming_the_field(
    data: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidLeadError) as caught:
        parse_lead(data)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("{not json", "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        ("[1, 2]", "JSON object, not an array"),
        (None, "JSON object, not null"),
        ("42", "JSON object, not a number"),
    ],
)
def test_non_objects_are_rejected(raw: object, reason: str) -> None:
    with pytest.raises(InvalidLeadError, match=reason):
        parse_lead(raw)


def test_reasons_never_contain_the_value() -> None:
    secret_email = "private.person@example.com"
    cases = [
        {"email": secret_email + "x" * 40},
        {"email": secret_email.replace("@", " at ")},
        {"email": secret_email, "phone": "+1 555 0100 no digits? ok" * 3, "extra": secret_email},
    ]
    for data in cases:
        with pytest.raises(InvalidLeadError) as caught:
            parse_lead(data)
        assert "private" not in str(caught.value)
        assert "555" not in str(caught.value)


def test_lead_id_is_deterministic_and_ignores_form() -> None:
    a = parse_lead({"email": "A@Example.com", "first_name": " Ann ", "source": "web"})
    b = parse_lead(
        {"source": "web", "first_name": "Ann", "email": "a@example.com",
         "received_at": "2024-01-01T00:00:00Z"}
    )  # fmt: skip
    assert a.lead_id == b.lead_id
    assert a.lead_id.startswith("ld_") and len(a.lead_id) == 35
    different = parse_lead({"email": "a@example.com", "first_name": "Ann", "source": "ads"})
    assert different.lead_id != a.lead_id


def test_a_given_lead_id_is_kept() -> None:
    assert parse_lead({"email": "a@example.com", "lead_id": "crm:00Q1"}).lead_id == "crm:00Q1"


def test_lead_is_frozen() -> None:
    lead = parse_lead({"email": "a@example.com"})
    with pytest.raises(ValidationError):
        lead.email = "b@example.com"


def test_wire_round_trip(lead_data: dict[str, Any]) -> None:
    lead = parse_lead(lead_data)
    message = build_message(lead)
    assert "body_encoding" not in message["properties"]
    assert json.loads(message["body"])[0] == [lead.to_json_dict()]
    assert parse_message(json.dumps(message)) == lead
    assert "jane.roe" not in message["headers"]["argsrepr"]


@pytest.mark.parametrize(
    ("args", "kwargs", "reason"),
    [
        ((), {}, "exactly one positional argument"),
        (({"email": "a@example.com"}, 1), {}, "exactly one positional argument"),
        (({"email": "a@example.com"},), {"force": True}, "unexpected keyword arguments"),
        (("a@example.com",), {}, "not valid JSON"),
        (({"first_name": "x"},), {}, "email: required"),
    ],
)
def test_task_arguments_other_than_one_lead_are_invalid(
    args: tuple[object, ...], kwargs: dict[str, object], reason: str
) -> None:
    with pytest.raises(InvalidLeadError, match=reason):
        lead_from_task_args(args, kwargs)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("nope", "message is not valid JSON"),
        ('{"body": "[[{"}', "headers"),
        (json.dumps({"body": "[[{", "headers": {"task": "leadsync.sync_lead"},
                     "properties": {}}), "body is not valid JSON"),
        (json.dumps({"body": "{}", "headers": {"task": "leadsync.sync_lead"},
                     "properties": {}}), "not \\[args, kwargs, embed\\]"),
        (json.dumps({"body": "[[{}], {}]", "headers": {"task": "other"},
                     "properties": {}}), "not for leadsync.sync_lead"),
        (json.dumps({"body": "W10=", "headers": {"task": "leadsync.sync_lead"},
                     "properties": {"body_encoding": "base64"}}), "encoded"),
    ],
)  # fmt: skip
def test_malformed_raw_messages_are_invalid(raw: str, reason: str) -> None:
    with pytest.raises(InvalidLeadError, match=reason):
        parse_message(raw)


@pytest.mark.parametrize("data", [
    "[" * 100_000,  # a RecursionError inside json.loads
    "[" * 20 + "]" * 20,
    {"email": "a@b.example", "custom_fields": {"k": [[[[[[[[[["v"]]]]]]]]]]}},
])
def test_deep_nesting_is_an_invalid_lead_not_a_crash(data: object) -> None:
    with pytest.raises(InvalidLeadError, match="nested deeper than 8 levels"):
        parse_lead(data)


def test_lead_text_over_a_mebibyte_is_refused_unparsed() -> None:
    with pytest.raises(InvalidLeadError, match="longer than 1048576 characters"):
        parse_lead("[" * 1_048_577)
