"""Fact 17: contact lists, and custom fields referenced by UUID (fact 18, imports, is in
test_imports.py)."""

from __future__ import annotations

from tests.fixtures.sandbox import CC


def test_fact_17_default_list_and_create_with_409_on_duplicate(cc: CC) -> None:
    lists = cc.call("GET", "/contact_lists", params={"include_count": "true"}).json()
    assert lists["lists_count"] == 1
    default = lists["lists"][0]
    assert default["list_id"] == cc.list_id
    assert {"list_id", "name", "favorite", "created_at", "updated_at"} <= set(default)
    made = cc.call("POST", "/contact_lists", json={"name": "Webinar", "favorite": True,
                                                   "description": "Spring"})
    assert made.status_code == 201 and made.json()["name"] == "Webinar"
    duplicate = cc.call("POST", "/contact_lists", json={"name": "webinar"})
    assert duplicate.status_code == 409 and duplicate.json()[0]["error_key"]
    too_long = cc.call("POST", "/contact_lists", json={"name": "x" * 256})
    assert too_long.status_code == 400
    cc.sign_up("a@b.co", list_memberships=[made.json()["list_id"]])
    counted = cc.call("GET", "/contact_lists",
                      params={"include_membership_count": "all"}).json()["lists"]
    assert {x["name"]: x["membership_count"] for x in counted} == {
        "General Interest": 0, "Webinar": 1}


def test_fact_17_custom_fields_are_referenced_by_uuid(cc: CC) -> None:
    made = cc.call("POST", "/contact_custom_fields", json={"label": "Lead source",
                                                           "type": "string"})
    assert made.status_code == 201
    field = made.json()
    assert field["name"] == "Lead_source" and len(field["custom_field_id"]) == 36
    listed = cc.call("GET", "/contact_custom_fields").json()["custom_fields"]
    assert [f["custom_field_id"] for f in listed] == [field["custom_field_id"]]
    assert cc.call("POST", "/contact_custom_fields",
                   json={"label": "Lead source", "type": "string"}).status_code == 409
    unknown = cc.sign_up("a@b.co", custom_fields=[
        {"custom_field_id": "6f1c1d0e-0000-4000-8000-000000000000", "value": "x"}])
    assert unknown.status_code == 404
