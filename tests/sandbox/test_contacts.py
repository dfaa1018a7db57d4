"""Facts 12-16: bodies (415/400), POST /contacts and its 409, sign_up_form, GET by email with
paging, and PUT semantics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.fixtures.sandbox import CC

VALIDATION = "contacts.api.validation.error"


def _error_key(answer: Any) -> str:
    body = answer.json()
    assert isinstance(body, list) and set(body[0]) == {"error_key", "error_message"}
    return str(body[0]["error_key"])


def test_fact_12_non_json_content_type_is_415(cc: CC) -> None:
    answer = cc.call("POST", "/contacts/sign_up_form", data="email_address=a@b.co",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 415 and _error_key(answer)


def test_fact_12_malformed_json_and_schema_violations_are_400(cc: CC) -> None:
    malformed = cc.call("POST", "/contacts/sign_up_form", data="{nope",
                        headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400 and _error_key(malformed) == VALIDATION
    too_long = cc.sign_up("a@b.co", first_name="x" * 51)
    assert too_long.status_code == 400 and "first_name" in too_long.json()[0]["error_message"]
    too_many = cc.sign_up("a@b.co", list_memberships=[cc.list_id] * 51)
    assert too_many.status_code == 400 and "50" in too_many.json()[0]["error_message"]
    fields = [{"custom_field_id": cc.list_id, "value": "v"}] * 26
    post = cc.call("POST", "/contacts", json={"create_source": "Account",
                                              "email_address": {"address": "a@b.co"},
                                              "custom_fields": fields})
    assert post.status_code == 400 and "25" in post.json()[0]["error_message"]
    assert "a@b.co" not in too_long.text  # messages never echo the values


def test_fact_13_post_contacts_requires_create_source_and_identity(cc: CC) -> None:
    no_source = cc.call("POST", "/contacts", json={"email_address": {"address": "a@b.co"}})
    assert no_source.status_code == 400 and _error_key(no_source) == VALIDATION
    nothing = cc.call("POST", "/contacts", json={"create_source": "Account"})
    assert nothing.status_code == 400
    created = cc.call("POST", "/contacts", json={"create_source": "Account", "first_name": "A",
                                                 "email_address": {"address": "Lead@B.co"}})
    assert created.status_code == 201
    body = created.json()
    assert len(body["contact_id"]) == 36 and body["created_at"] and body["updated_at"]
    assert body["email_address"]["address"] == "Lead@B.co" and body["create_source"] == "Account"


def test_fact_13_existing_email_is_409_even_when_deleted(cc: CC) -> None:
    first = cc.call("POST", "/contacts", json={"create_source": "Account",
                                               "email_address": {"address": "dup@b.co"}})
    contact_id = first.json()["contact_id"]
    conflict = cc.call("POST", "/contacts", json={"create_source": "Account",
                                                  "email_address": {"address": "DUP@b.co"}})
    assert conflict.status_code == 409
    assert conflict.json() == [{"error_key": "contacts.api.conflict",
                                "error_message": f"Email already exists for contact {contact_id}"}]
    assert cc.call("DELETE", f"/contacts/{contact_id}").status_code == 204
    again = cc.call("POST", "/contacts", json={"create_source": "Account",
                                               "email_address": {"address": "dup@b.co"}})
    assert again.status_code == 409


def test_fact_14_sign_up_form_creates_201_then_updates_200(cc: CC) -> None:
    created = cc.sign_up("lead@b.co", first_name="Ann")
    assert created.status_code == 201 and created.json()["action"] == "created"
    updated = cc.sign_up("LEAD@b.co", last_name="Lee")
    assert updated.status_code == 200 and updated.json() == {
        "contact_id": created.json()["contact_id"], "action": "updated"}
    contact = cc.call("GET", f"/contacts/{created.json()['contact_id']}").json()
    assert contact["first_name"] == "Ann" and contact["last_name"] == "Lee"  # partial update
    stats = cc.server.stats()
    assert stats["sign_up_form"] == {"calls": 2, "contacts": 1, "max_calls_per_contact": 2}
    assert stats["contacts"]["created"] == 1 and stats["contacts"]["updated"] == 1


def test_fact_14_sign_up_form_requires_lists_and_a_string_email(cc: CC) -> None:
    no_lists = cc.call("POST", "/contacts/sign_up_form", json={"email_address": "a@b.co"})
    assert no_lists.status_code == 400
    empty = cc.sign_up("a@b.co", list_memberships=[])
    assert empty.status_code == 400
    unknown = cc.sign_up("a@b.co", list_memberships=["6f1c1d0e-0000-4000-8000-000000000000"])
    assert unknown.status_code == 404
    as_object = cc.call("POST", "/contacts/sign_up_form", json={
        "email_address": {"address": "a@b.co"}, "list_memberships": [cc.list_id]})
    assert as_object.status_code == 400
    assert cc.sign_up("x" * 45 + "@b.com").status_code == 400  # 51 characters
    assert cc.sign_up("not-an-email").status_code == 400


def test_fact_14_sign_up_form_appends_lists_and_custom_fields(cc: CC) -> None:
    other = cc.call("POST", "/contact_lists", json={"name": "Webinar"}).json()["list_id"]
    field = cc.call("POST", "/contact_custom_fields",
                    json={"label": "Lead source", "type": "string"}).json()["custom_field_id"]
    contact_id = cc.sign_up("a@b.co").json()["contact_id"]
    cc.sign_up("a@b.co", list_memberships=[other],
               custom_fields=[{"custom_field_id": field, "value": "web"}])
    contact = cc.call("GET", f"/contacts/{contact_id}",
                      params={"include": "list_memberships,custom_fields"}).json()
    assert contact["list_memberships"] == [cc.list_id, other]
    assert contact["custom_fields"] == [{"custom_field_id": field, "value": "web"}]


def test_fact_14_sign_up_form_consent_rules(make_cc: Callable[..., CC]) -> None:
    plain = make_cc(rate_limit_per_s=0)
    new_id = plain.sign_up("new@b.co").json()["contact_id"]
    email = plain.call("GET", f"/contacts/{new_id}").json()["email_address"]
    assert email["permission_to_send"] == "explicit" and email["opt_in_source"] == "Contact"
    # An existing unsubscribed contact becomes explicit again.
    made = plain.call("POST", "/contacts", json={"create_source": "Account", "email_address": {
        "address": "gone@b.co", "permission_to_send": "unsubscribed"}}).json()
    plain.sign_up("gone@b.co")
    email = plain.call("GET", f"/contacts/{made['contact_id']}").json()["email_address"]
    assert email["permission_to_send"] == "explicit"

    coi = make_cc(rate_limit_per_s=0, confirmed_opt_in=True)
    new_id = coi.sign_up("new@b.co").json()["contact_id"]
    email = coi.call("GET", f"/contacts/{new_id}").json()["email_address"]
    assert email["permission_to_send"] == "pending_confirmation"


def test_fact_14_sign_up_form_revives_deleted_contact(cc: CC) -> None:
    contact_id = cc.sign_up("a@b.co").json()["contact_id"]
    cc.call("DELETE", f"/contacts/{contact_id}")
    assert cc.call("GET", "/contacts", params={"email": "a@b.co"}).json()["contacts"] == []
    revived = cc.sign_up("a@b.co")
    assert revived.status_code == 200 and revived.json()["contact_id"] == contact_id
    assert len(cc.call("GET", "/contacts", params={"email": "a@b.co"}).json()["contacts"]) == 1


def test_fact_14_overlapping_writes_to_one_contact_get_409(make_cc: Callable[..., CC]) -> None:
    cc = make_cc(rate_limit_per_s=0, conflict_window_ms=60_000)
    assert cc.sign_up("a@b.co").status_code == 201
    overlap = cc.sign_up("a@b.co")
    assert overlap.status_code == 409 and _error_key(overlap) == "contacts.api.conflict"
    assert cc.sign_up("other@b.co").status_code == 201  # other contacts are unaffected
    cc.server.advance_clock(61)
    assert cc.sign_up("a@b.co").status_code == 200


def test_fact_15_get_contacts_by_email_is_exact_and_hides_deleted(cc: CC) -> None:
    cc.sign_up("ann@b.co")
    gone = cc.sign_up("bob@b.co").json()["contact_id"]
    cc.call("DELETE", f"/contacts/{gone}")
    found = cc.call("GET", "/contacts", params={"email": "ANN@b.co"}).json()["contacts"]
    assert [c["email_address"]["address"] for c in found] == ["ann@b.co"]
    assert cc.call("GET", "/contacts", params={"email": "ann@b"}).json() == {"contacts": []}
    assert cc.call("GET", "/contacts", params={"email": "bob@b.co"}).json()["contacts"] == []
    for status in ("all", "deleted"):
        listed = cc.call("GET", "/contacts", params={"email": "bob@b.co", "status": status})
        assert [c["contact_id"] for c in listed.json()["contacts"]] == [gone]


def test_fact_15_limit_bounds_and_cursor_paging(cc: CC) -> None:
    for bad in ("0", "501", "x"):
        assert cc.call("GET", "/contacts", params={"limit": bad}).status_code == 400
    emails = {f"p{i}@b.co" for i in range(7)}
    for email in emails:
        cc.sign_up(email)
    seen: list[str] = []
    page = cc.call("GET", "/contacts", params={"limit": "3"}).json()
    while True:
        seen += [c["email_address"]["address"] for c in page["contacts"]]
        nxt = page.get("_links", {}).get("next", {}).get("href")
        if nxt is None:
            break
        assert nxt.startswith("/v3/contacts?")
        page = cc.http.get(cc.server.url + nxt, timeout=10, headers={
            "Authorization": f"Bearer {cc.access_token}"}).json()
    assert sorted(seen) == sorted(emails) and len(seen) == 7


def test_fact_16_put_requires_update_source_and_nulls_omitted_fields(cc: CC) -> None:
    contact_id = cc.sign_up("a@b.co", first_name="Ann", job_title="CTO",
                            phone_number="555-0100").json()["contact_id"]
    path = f"/contacts/{contact_id}"
    body = {"email_address": {"address": "a@b.co"}, "last_name": "Lee"}
    assert cc.call("PUT", path, json=body).status_code == 400
    answer = cc.call("PUT", path, json={**body, "update_source": "Account"})
    assert answer.status_code == 200
    contact = answer.json()
    assert contact["last_name"] == "Lee"
    assert "first_name" not in contact and "job_title" not in contact  # nulled
    assert contact["list_memberships"] == [cc.list_id]  # subresources kept
    assert contact["phone_numbers"][0]["phone_number"] == "555-0100"


def test_fact_16_put_revives_deleted_and_404_for_unknown(cc: CC) -> None:
    contact_id = cc.sign_up("a@b.co").json()["contact_id"]
    cc.call("DELETE", f"/contacts/{contact_id}")
    body = {"email_address": {"address": "a@b.co"}, "update_source": "Account"}
    assert cc.call("PUT", f"/contacts/{contact_id}", json=body).status_code == 200
    assert cc.call("GET", "/contacts", params={"email": "a@b.co"}).json()["contacts"]
    unknown = cc.call("PUT", "/contacts/6f1c1d0e-0000-4000-8000-000000000000", json=body)
    assert unknown.status_code == 404 and _error_key(unknown) == "contacts.api.not_found"
