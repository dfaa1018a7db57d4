"""Facts 17 and 18: contact lists, custom fields referenced by UUID, and JSON imports that
progress to completed with per-contact errors."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

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


def _import(cc: CC, rows: list[dict[str, Any]], **extra: Any) -> Any:
    return cc.call("POST", "/activities/contacts_json_import",
                   json={"import_data": rows, "list_ids": [cc.list_id], **extra})


def test_fact_18_import_progresses_to_completed_with_row_errors(cc: CC) -> None:
    cc.call("POST", "/contact_custom_fields", json={"label": "lead_source", "type": "string"})
    cc.sign_up("old@b.co", first_name="Old")
    rows = [{"email": "new@b.co", "first_name": "New", "cf:lead_source": "web"},
            {"email": "old@b.co", "company_name": "Acme"},
            {"first_name": "no email"},
            {"email": "x@b.co", "first_name": "y" * 51},
            {"email": "z@b.co", "cf:unknown_field": "v"}]
    answer = _import(cc, rows)
    assert answer.status_code == 201
    body = answer.json()
    assert body["state"] == "initialized"
    assert body["_links"]["self"]["href"] == f"/v3/activities/{body['activity_id']}"
    path = f"/activities/{body['activity_id']}"
    states = [cc.call("GET", path).json()["state"]]
    cc.server.advance_clock(cc.server.config.activity_step_s)
    states.append(cc.call("GET", path).json()["state"])
    cc.server.advance_clock(cc.server.config.activity_step_s)
    done = cc.call("GET", path).json()
    assert [*states, done["state"]] == ["initialized", "processing", "completed"]
    assert done["percent_done"] == 100
    assert done["status"]["items_total_count"] == 5 and done["status"]["error_count"] == 3
    assert len(done["activity_errors"]) == 3
    assert all(isinstance(e, str) and e.startswith("Line ") for e in done["activity_errors"])
    new = cc.call("GET", "/contacts", params={"email": "new@b.co",
                                              "include": "custom_fields"}).json()["contacts"][0]
    assert new["email_address"]["permission_to_send"] == "implicit"
    assert new["custom_fields"][0]["value"] == "web"
    old = cc.call("GET", "/contacts", params={"email": "old@b.co"}).json()["contacts"][0]
    assert old["first_name"] == "Old" and old["company_name"] == "Acme"


def test_fact_18_import_completes_in_real_time_too(cc: CC) -> None:
    activity = _import(cc, [{"email": "a@b.co"}]).json()["activity_id"]
    deadline = time.monotonic() + 10
    state = ""
    while time.monotonic() < deadline and state != "completed":
        state = cc.call("GET", f"/activities/{activity}").json()["state"]
        time.sleep(0.05)
    assert state == "completed"


def test_fact_18_import_limits(make_cc: Callable[..., CC]) -> None:
    cc = make_cc(rate_limit_per_s=0, daily_quota=0, activity_step_s=3600)
    too_many = _import(cc, [{"email": f"a{i}@b.co"} for i in range(40_001)])
    assert too_many.status_code == 400 and "40000" in too_many.json()[0]["error_message"]
    assert _import(cc, [{"email": "a@b.co"}], list_ids=[]).status_code == 400
    for _ in range(1_000):
        assert _import(cc, [{"email": "a@b.co"}]).status_code == 201
    full = _import(cc, [{"email": "a@b.co"}])
    assert full.status_code == 429 and "1,000 queued activities" in full.json()["error_message"]
    cc.server.advance_clock(7200)  # the queue drains
    assert _import(cc, [{"email": "a@b.co"}]).status_code == 201


def test_fact_18_only_the_first_4_mb_are_processed(make_cc: Callable[..., CC]) -> None:
    cc = make_cc(rate_limit_per_s=0, daily_quota=0)
    rows = [{"email": f"user{i:05d}@example.com", "first_name": "x" * 40,
             "last_name": "y" * 40, "company_name": "z" * 40} for i in range(30_000)]
    assert len(json.dumps({"import_data": rows, "list_ids": [cc.list_id]})) > 4 * 1024 * 1024
    activity = _import(cc, rows).json()["activity_id"]
    cc.server.advance_clock(1.0)
    status = cc.call("GET", f"/activities/{activity}").json()["status"]
    assert 0 < status["items_total_count"] < 30_000
    assert cc.server.stats()["contacts"]["count"] == status["items_total_count"]


def test_fact_18_imports_and_polls_count_against_the_daily_quota(
        make_cc: Callable[..., CC]) -> None:
    cc = make_cc(rate_limit_per_s=0, daily_quota=3)
    used_by_setup = cc.server.stats()["api_requests"]
    assert used_by_setup < 3
    answers = [_import(cc, [{"email": "a@b.co"}]).status_code for _ in range(3 - used_by_setup)]
    assert answers == [201] * len(answers)
    refused = _import(cc, [{"email": "a@b.co"}])
    assert refused.status_code == 429 and refused.json()["error_key"] == "quota_exceeded"
    assert cc.server.stats()["activities"]["imports"] == len(answers)


def test_fact_18_row_errors_name_the_line_and_the_email(cc: CC) -> None:
    activity = _import(cc, [{"email": "fine@b.co"}, {"email": "bad@b.co", "cf:nope": "v"}]
                       ).json()["activity_id"]
    cc.server.advance_clock(1.0)
    done = cc.call("GET", f"/activities/{activity}").json()
    assert done["activity_errors"] == ["Line 2 (bad@b.co): custom field cf:nope does not exist"]
    assert cc.server.stats()["activities"]["polls"] == 1


def test_fact_18_a_failed_import_ends_failed_and_writes_nothing(
        make_cc: Callable[..., CC]) -> None:
    cc = make_cc(failed_imports=1)
    activity = _import(cc, [{"email": "a@b.co"}]).json()["activity_id"]
    cc.server.advance_clock(1.0)
    assert cc.call("GET", f"/activities/{activity}").json()["state"] == "failed"
    assert cc.server.stats()["contacts"]["count"] == 0
    second = _import(cc, [{"email": "a@b.co"}]).json()["activity_id"]
    cc.server.advance_clock(1.0)
    assert cc.call("GET", f"/activities/{second}").json()["state"] == "completed"
