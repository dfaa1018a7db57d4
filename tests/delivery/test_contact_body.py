"""Request bodies: each validates against Constant Contact's own schema and keeps consent honest."""

from __future__ import annotations

from typing import Any

import pytest

from worker.delivery.contact_body import create_body, sign_up_form_body, update_body
from worker.leads.lead import parse_lead
from worker.sandbox.schema import first_error

LIST = "9d8c5b1e-0000-4000-8000-000000000001"
FIELD = "1a2b3c4d-0000-4000-8000-000000000002"
FULL = {
    "email": "Grace.Hopper@Navy.example", "first_name": "Grace", "last_name": "Hopper",
    "phone": "+1 202 555 0101", "company": "US Navy", "job_title": "Rear Admiral",
    "address": {"kind": "work", "street": "1 Pentagon", "city": "Arlington", "state": "VA",
                "postal_code": "22202", "country": "US"},
}


def validate_body(definition: str, body: dict[str, Any]) -> None:
    """Constant Contact's own schema (the spec copy the sandbox also validates with)."""
    assert first_error(definition, body) is None, first_error(definition, body)


EXISTING: dict[str, Any] = {
    "contact_id": "c-1",
    "email_address": {"address": "grace.hopper@navy.example", "permission_to_send": "unsubscribed",
                      "created_at": "2020-01-01T00:00:00Z"},
    "first_name": "Grace", "last_name": "Hopper", "company_name": "Old Co",
    "birthday_month": 12, "birthday_day": 9, "anniversary": "1934-06-15",
    "create_source": "Contact", "created_at": "2020-01-01T00:00:00Z",
    "list_memberships": ["7e7e7e7e-0000-4000-8000-000000000003"],
    "custom_fields": [{"custom_field_id": FIELD, "value": "old"}],
    "phone_numbers": [{"phone_number_id": "p1", "phone_number": "+1 202 555 0199",
                       "kind": "home", "create_source": "Contact"}],
    "street_addresses": [],
}


def test_sign_up_form_body_is_a_valid_create_or_update_input() -> None:
    body = sign_up_form_body(parse_lead(FULL), [LIST], {FIELD: "42"})
    validate_body("ContactCreateOrUpdateInput", body)
    assert body["email_address"] == "grace.hopper@navy.example"
    assert body["phone_number"] == "+1 202 555 0101" and body["street_address"]["kind"] == "work"
    assert "permission_to_send" not in str(body)


def test_create_body_for_a_lead_without_consent_is_implicit_and_from_the_account() -> None:
    body = create_body(parse_lead(FULL), [LIST], {FIELD: "42"})
    validate_body("ContactPostRequest", body)
    assert body["email_address"] == {"address": "grace.hopper@navy.example",
                                     "permission_to_send": "implicit"}
    assert body["create_source"] == "Account"


def test_update_body_carries_every_field_and_never_changes_permission() -> None:
    lead = parse_lead({**FULL, "company": "Navy"})
    body = update_body(lead, EXISTING, [LIST], {FIELD: "new"})
    validate_body("ContactPutRequest", body)
    assert body["email_address"]["permission_to_send"] == "unsubscribed"
    assert body["update_source"] == "Account"
    # A PUT nulls what it leaves out: the birthday and anniversary the lead lacks are carried.
    assert (body["birthday_month"], body["birthday_day"], body["anniversary"]) == (
        12, 9, "1934-06-15")
    assert body["company_name"] == "Navy"  # the lead's value wins
    assert body["list_memberships"] == [EXISTING["list_memberships"][0], LIST]
    assert body["custom_fields"] == [{"custom_field_id": FIELD, "value": "new"}]
    assert {p["phone_number"] for p in body["phone_numbers"]} == {"+1 202 555 0199",
                                                                  "+1 202 555 0101"}
    assert all("phone_number_id" not in p for p in body["phone_numbers"])


@pytest.mark.parametrize("consent", [True, False])
def test_bodies_for_a_minimal_lead_are_valid(consent: bool) -> None:
    lead = parse_lead({"email": "x@y.example", "consent": consent})
    validate_body("ContactCreateOrUpdateInput", sign_up_form_body(lead, [LIST], {}))
    validate_body("ContactPostRequest", create_body(lead, [LIST], {}))
    validate_body("ContactPutRequest", update_body(lead, {"email_address": {
        "address": "x@y.example"}}, [LIST], {}))
