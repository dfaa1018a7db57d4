"""The shipped spec copy is Constant Contact's YAML (build 3.0.172), and every answer of the main
endpoints validates against the spec's response schema for that operation."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tests.fixtures.sandbox import CC
from worker.sandbox.schema import SPEC_FILE, response_errors

REPO = Path(__file__).resolve().parents[2]
# Where a developer's checkout finds Constant Contact's YAML; a bare clone has nothing there.
REFERENCE = REPO.parent / "shared" / "reference" / "constant-contact-v3.swagger.yaml"
# sha256 of the reference YAML (build 3.0.172) parsed and written as canonical JSON (sorted
# keys, no spaces): recorded here so the check needs nothing outside the repository.
REFERENCE_SHA256 = "9cfb54f34c371b0219b675b1009adf0d0a8ea127e5c264228cbcb1494c889ea7"


def canonical_sha256(document: Any) -> str:
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def test_shipped_spec_copy_equals_the_reference_yaml() -> None:
    shipped = json.loads(resources.files("worker.sandbox").joinpath(SPEC_FILE).read_text())
    assert shipped["info"]["version"] == "3.0.172"
    assert canonical_sha256(shipped) == REFERENCE_SHA256, "the shipped copy was edited"
    # Beside the shared reference (a developer's checkout), the recorded checksum must still be
    # the reference's; a bare clone has only the recorded one, which is enough.
    if REFERENCE.exists():
        with REFERENCE.open(encoding="utf-8") as source:
            assert canonical_sha256(yaml.safe_load(source)) == REFERENCE_SHA256


def _check(path: str, method: str, answer: Any) -> None:
    errors = response_errors(path, method, answer.status_code, answer.json())
    assert errors == [], f"{method} {path} {answer.status_code}: {errors}"


def test_every_main_answer_validates_against_the_spec(cc: CC) -> None:
    field = cc.call("POST", "/contact_custom_fields", json={"label": "Source", "type": "string"})
    _check("/contact_custom_fields", "post", field)
    field_id = field.json()["custom_field_id"]
    _check("/contact_custom_fields", "get", cc.call("GET", "/contact_custom_fields"))
    made = cc.call("POST", "/contact_lists", json={"name": "Webinar"})
    _check("/contact_lists", "post", made)
    _check("/contact_lists", "get", cc.call("GET", "/contact_lists", params={
        "include_count": "true", "include_membership_count": "all"}))
    full = {"first_name": "Ann", "last_name": "Lee", "job_title": "CTO", "company_name": "Acme",
            "phone_number": "555-0100", "birthday_month": 3, "birthday_day": 4,
            "anniversary": "2020-01-01", "custom_fields": [{"custom_field_id": field_id,
                                                            "value": "web"}],
            "street_address": {"kind": "work", "street": "1 Main", "city": "Boston",
                               "state": "MA", "postal_code": "02451", "country": "US"}}
    created = cc.sign_up("ann@b.co", **full)
    _check("/contacts/sign_up_form", "post", created)
    _check("/contacts/sign_up_form", "post", cc.sign_up("ann@b.co", list_memberships=[
        made.json()["list_id"]]))
    contact_id = created.json()["contact_id"]
    every = "custom_fields,list_memberships,phone_numbers,street_addresses,taggings,notes"
    _check("/contacts/{contact_id}", "get",
           cc.call("GET", f"/contacts/{contact_id}", params={"include": every}))
    posted = cc.call("POST", "/contacts", json={
        "create_source": "Account", "email_address": {"address": "bob@b.co",
                                                      "permission_to_send": "implicit"},
        "phone_numbers": [{"phone_number": "555-0101", "kind": "mobile"}],
        "street_addresses": [{"kind": "home", "city": "Boston"}]})
    _check("/contacts", "post", posted)
    _check("/contacts/{contact_id}", "put", cc.call(
        "PUT", f"/contacts/{posted.json()['contact_id']}",
        json={"update_source": "Account", "email_address": {"address": "bob@b.co"},
              "first_name": "Bob"}))
    for _ in range(3):
        cc.sign_up(f"p{_}@b.co")
    page = cc.call("GET", "/contacts", params={"limit": "2", "include": every,
                                               "include_count": "true"})
    assert page.json()["_links"]["next"]["href"]
    _check("/contacts", "get", page)
    activity = cc.call("POST", "/activities/contacts_json_import", json={
        "import_data": [{"email": "c@b.co"}, {"first_name": "no email"}],
        "list_ids": [cc.list_id]})
    _check("/activities/contacts_json_import", "post", activity)
    path = f"/activities/{activity.json()['activity_id']}"
    _check("/activities/{activity_id}", "get", cc.call("GET", path))
    cc.server.advance_clock(1.0)
    _check("/activities/{activity_id}", "get", cc.call("GET", path))


def test_response_checker_catches_a_wrong_answer(cc: CC) -> None:
    """The checker itself can fail: a list id that is not a string violates ContactList."""
    errors = response_errors("/contact_lists", "get", 200, {"lists": [{"list_id": 7}]})
    assert errors
