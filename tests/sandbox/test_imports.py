"""Fact 18 (facts sheet 4.6 and 5): `contacts_json_import` and `GET /activities/{id}`, one test
per behaviour. Every answer checked here also validates against the spec's response schema
(`ActivityImport` for the 201, `Activity` for a poll), and status counters use only names the
spec's `ActivityStatus` defines."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests.fixtures.sandbox import CC
from worker.sandbox.schema import response_errors, spec

IMPORT_PATH = "/activities/contacts_json_import"
FOUR_MB = 4 * 1024 * 1024
STATUS_NAMES = set(spec()["definitions"]["ActivityStatus"]["properties"])


def _import(cc: CC, rows: list[dict[str, Any]], **extra: Any) -> Any:
    answer = cc.call("POST", IMPORT_PATH,
                     json={"import_data": rows, "list_ids": [cc.list_id], **extra})
    if answer.status_code == 201:
        assert response_errors(IMPORT_PATH, "post", 201, answer.json()) == []
    return answer


def _raw_import(cc: CC, body: bytes) -> Any:
    return cc.call("POST", IMPORT_PATH, data=body,
                   headers={"Content-Type": "application/json"})


def _poll(cc: CC, activity_id: str) -> dict[str, Any]:
    answer = cc.call("GET", f"/activities/{activity_id}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert response_errors("/activities/{activity_id}", "get", 200, body) == []
    assert set(body["status"]) <= STATUS_NAMES, set(body["status"]) - STATUS_NAMES
    return body


def _step(cc: CC) -> None:
    cc.server.advance_clock(cc.server.config.activity_step_s)


def _compact(rows: list[dict[str, Any]], list_id: str) -> bytes:
    return json.dumps({"import_data": rows, "list_ids": [list_id]},
                      separators=(",", ":")).encode()


def test_fact_18_an_import_answers_201_initialized_with_a_self_link(cc: CC) -> None:
    body = _import(cc, [{"email": "a@b.co"}]).json()
    assert body["state"] == "initialized" and len(body["activity_id"]) == 36
    assert body["_links"]["self"]["href"] == f"/v3/activities/{body['activity_id']}"
    assert cc.call("GET", "/activities/00000000-0000-4000-8000-000000000000"
                   ).status_code == 404


def test_fact_18_an_import_goes_initialized_then_processing_then_completed(cc: CC) -> None:
    activity_id = _import(cc, [{"email": "a@b.co"}, {"email": "c@b.co"}]).json()["activity_id"]
    first = _poll(cc, activity_id)
    _step(cc)
    second = _poll(cc, activity_id)
    _step(cc)
    done = _poll(cc, activity_id)
    assert [first["state"], second["state"], done["state"]] == [
        "initialized", "processing", "completed"]
    assert [first["percent_done"], done["percent_done"]] == [0, 100]
    assert "started_at" in second and "completed_at" not in second
    assert done["completed_at"] >= done["started_at"] >= done["created_at"]
    assert cc.server.stats()["contacts"]["count"] == 2  # written when it completes


@pytest.mark.parametrize(("end", "written"), [("failed", 0), ("timed_out", 2),
                                              ("cancelled", 2)])
def test_fact_18_an_import_can_end_failed_timed_out_or_cancelled(
        cc: CC, end: str, written: int) -> None:
    """Injected over HTTP (`POST /_sandbox/faults {"<end>_imports": 1}`): the next import ends
    so; `failed` writes nothing, `timed_out` and `cancelled` the rows done by then (half)."""
    faults = requests.post(f"{cc.server.url}/_sandbox/faults", json={f"{end}_imports": 1},
                           timeout=10).json()["faults"]
    assert faults[f"{end}_imports"] == 1
    rows = [{"email": f"r{i}@b.co"} for i in range(4)]
    activity_id = _import(cc, rows).json()["activity_id"]
    states = [_poll(cc, activity_id)["state"]]
    _step(cc)
    states.append(_poll(cc, activity_id)["state"])
    _step(cc)
    ended = _poll(cc, activity_id)
    assert [*states, ended["state"]] == ["initialized", "processing", end]
    assert ended["status"]["items_total_count"] == 4
    assert ended["status"]["items_completed_count"] == written
    assert ended["percent_done"] == 100 * written // 4
    assert "completed_at" in ended
    assert cc.server.stats()["contacts"]["count"] == written
    assert cc.server.set_faults()[f"{end}_imports"] == 0  # spent: the next one completes
    again = _import(cc, rows).json()["activity_id"]
    cc.server.advance_clock(1.0)
    assert _poll(cc, again)["state"] == "completed"
    assert cc.server.stats()["contacts"]["count"] == 4  # an upsert: no one twice


def test_fact_18_status_counters_count_rows_people_errors_and_the_unsubscribed(cc: CC) -> None:
    cc.sign_up("old@b.co", first_name="Old")
    cc.call("POST", "/contacts", json={"create_source": "Account", "email_address": {
        "address": "gone@b.co", "permission_to_send": "unsubscribed"}})
    rows = [{"email": "new@b.co"}, {"email": "old@b.co"}, {"email": "gone@b.co"},
            {"first_name": "no email"}, {"email": "not-an-email"}]
    activity_id = _import(cc, rows).json()["activity_id"]
    assert _poll(cc, activity_id)["status"] == {"items_total_count": 5,
                                                "items_completed_count": 0}
    cc.server.advance_clock(1.0)
    done = _poll(cc, activity_id)
    assert done["status"] == {"items_total_count": 5, "items_completed_count": 5,
                              "person_count": 3, "error_count": 2, "correctable_count": 0,
                              "cannot_add_to_list_count": 1}
    gone = cc.call("GET", "/contacts", params={"email": "gone@b.co",
                                               "include": "list_memberships"}).json()
    contact = gone["contacts"][0]
    assert contact["email_address"]["permission_to_send"] == "unsubscribed"  # stays so
    assert contact.get("list_memberships", []) == []


def test_fact_18_activity_errors_are_strings_naming_the_line_and_the_email(cc: CC) -> None:
    rows = [{"email": "fine@b.co"}, {"email": "bad@b.co", "cf:nope": "v"},
            {"first_name": "no email"}, {"email": "long@b.co", "first_name": "y" * 51}]
    activity_id = _import(cc, rows).json()["activity_id"]
    cc.server.advance_clock(1.0)
    errors = _poll(cc, activity_id)["activity_errors"]
    assert all(isinstance(e, str) for e in errors)
    assert errors[0] == "Line 2 (bad@b.co): custom field cf:nope does not exist"
    assert errors[1].startswith("Line 3: ") and errors[2].startswith("Line 4 (long@b.co): ")
    assert "first_name" in errors[2]


def test_fact_18_new_contacts_are_implicit_and_existing_change_only_what_is_sent(
        cc: CC) -> None:
    cc.call("POST", "/contact_custom_fields", json={"label": "lead_source", "type": "string"})
    cc.sign_up("old@b.co", first_name="Old")
    activity_id = _import(cc, [{"email": "new@b.co", "first_name": "New",
                                "cf:lead_source": "web"},
                               {"email": "old@b.co", "company_name": "Acme"}]
                          ).json()["activity_id"]
    cc.server.advance_clock(1.0)
    assert _poll(cc, activity_id)["state"] == "completed"
    new = cc.call("GET", "/contacts", params={"email": "new@b.co",
                                              "include": "custom_fields"}).json()["contacts"][0]
    assert new["email_address"]["permission_to_send"] == "implicit"
    assert new["email_address"]["opt_in_source"] == "Account"
    assert new["custom_fields"][0]["value"] == "web"
    old = cc.call("GET", "/contacts", params={"email": "old@b.co"}).json()["contacts"][0]
    assert old["first_name"] == "Old" and old["company_name"] == "Acme"
    assert old["email_address"]["permission_to_send"] == "explicit"


def test_fact_18_at_most_40000_contacts_per_import(make_cc: Callable[..., CC]) -> None:
    cc = make_cc(rate_limit_per_s=0, daily_quota=0, activity_step_s=3600)
    rows = [{"email": f"a{i}@b.co"} for i in range(40_001)]
    too_many = _import(cc, rows)
    assert too_many.status_code == 400 and "40000" in too_many.json()[0]["error_message"]
    fits = _import(cc, rows[:40_000])
    assert fits.status_code == 201
    assert _poll(cc, fits.json()["activity_id"])["status"]["items_total_count"] == 40_000


def test_fact_18_list_ids_hold_1_to_50_existing_lists(cc: CC) -> None:
    row = [{"email": "a@b.co"}]
    assert _import(cc, row, list_ids=[]).status_code == 400
    assert _import(cc, row, list_ids=[cc.list_id] * 51).status_code == 400
    unknown = _import(cc, row, list_ids=["6f1c1d0e-0000-4000-8000-000000000000"])
    assert unknown.status_code == 404
    assert _import(cc, row, list_ids=[cc.list_id] * 50).status_code == 201


def _rows_of_size(count: int) -> list[dict[str, Any]]:
    """Rows of about 1.1 KB (long streets), so 4 MB is some 3,800 rows, not 30,000."""
    return [{"email": f"user{i:06d}@example.com", "street": "s" * 255, "home_street": "h" * 255,
             "work_street": "w" * 255, "other_street": "o" * 255} for i in range(count)]


def test_fact_18_a_body_of_exactly_4_mb_is_processed_whole(make_cc: Callable[..., CC]) -> None:
    cc = make_cc(rate_limit_per_s=0, daily_quota=0)
    rows = _rows_of_size(5_000)
    sizes = [len(_compact([row], cc.list_id)) - len(_compact([], cc.list_id)) for row in rows]
    last = {"email": "last@example.com", "first_name": "", "last_name": "", "job_title": "",
            "company_name": ""}
    room = FOUR_MB - len(_compact([last], cc.list_id))  # for whole rows and their commas
    count, used = 0, 0
    while used + sizes[count] + 1 <= room:
        used += sizes[count] + 1
        count += 1
    pad = room - used
    assert 0 <= pad <= 200  # four 50-character fields take up the rest
    for name in ("first_name", "last_name", "job_title", "company_name"):
        last[name], pad = "p" * min(pad, 50), pad - min(pad, 50)
    rows = [*rows[:count], last]
    body = _compact(rows, cc.list_id)
    assert len(body) == FOUR_MB
    activity_id = _raw_import(cc, body).json()["activity_id"]
    cc.server.advance_clock(1.0)
    assert _poll(cc, activity_id)["status"]["items_total_count"] == len(rows)
    assert cc.server.stats()["contacts"]["count"] == len(rows)


def test_fact_18_rows_past_the_first_4_mb_are_dropped_silently(
        make_cc: Callable[..., CC]) -> None:
    """Still a 201; only the rows whose bytes end within the first 4 MB are processed, the
    rest are not reported anywhere but in `items_total_count`."""
    cc = make_cc(rate_limit_per_s=0, daily_quota=0)
    rows = _rows_of_size(5_000)
    body = _compact(rows, cc.list_id)
    assert len(body) > FOUR_MB
    ends, at = [], len(b'{"import_data":[')
    for row in rows:  # where each row's JSON ends in the body, as sent
        at += len(json.dumps(row, separators=(",", ":")).encode())
        ends.append(at)
        at += 1  # the comma
    kept = sum(1 for end in ends if end <= FOUR_MB)
    assert 0 < kept < len(rows)
    answer = _raw_import(cc, body)
    assert answer.status_code == 201
    cc.server.advance_clock(1.0)
    done = _poll(cc, answer.json()["activity_id"])
    assert done["state"] == "completed" and done["activity_errors"] == []
    assert done["status"]["items_total_count"] == kept
    emails = {c["email_address"]["address"] for c in cc.server.contacts()}
    assert len(emails) == kept
    assert rows[kept - 1]["email"] in emails and rows[kept]["email"] not in emails


def test_fact_18_the_1001st_queued_activity_gets_429(make_cc: Callable[..., CC]) -> None:
    cc = make_cc(rate_limit_per_s=0, daily_quota=0, activity_step_s=3600)
    for _ in range(1_000):
        assert _import(cc, [{"email": "a@b.co"}]).status_code == 201
    full = _import(cc, [{"email": "a@b.co"}])
    assert full.status_code == 429
    assert full.json() == {"error_key": "too_many_requests", "error_message":
                           "You exceeded 1,000 queued activities for this user account."}
    assert cc.server.stats()["activities"]["imports"] == 1_000  # the refused one is not queued
    cc.server.advance_clock(7200)  # the queue drains (ended activities are not queued)
    assert _import(cc, [{"email": "a@b.co"}]).status_code == 201


def test_fact_18_imports_count_against_the_daily_quota(make_cc: Callable[..., CC]) -> None:
    cc = make_cc(rate_limit_per_s=0, daily_quota=3)
    assert cc.server.stats()["api_requests"] == 0
    answers = [_import(cc, [{"email": f"a{i}@b.co"}]).status_code for i in range(3)]
    assert answers == [201] * 3
    refused = _import(cc, [{"email": "a@b.co"}])
    assert refused.status_code == 429 and refused.json()["error_key"] == "quota_exceeded"
    assert cc.server.stats()["activities"]["imports"] == 3


def test_fact_18_activity_polls_count_against_the_daily_quota(
        make_cc: Callable[..., CC]) -> None:
    cc = make_cc(rate_limit_per_s=0, daily_quota=3)
    activity_id = _import(cc, [{"email": "a@b.co"}]).json()["activity_id"]
    assert [cc.call("GET", f"/activities/{activity_id}").status_code for _ in range(3)] == [
        200, 200, 429]
    assert cc.server.stats()["throttled_429"]["quota_exceeded"] == 1


def test_fact_18_an_import_also_completes_in_real_time(cc: CC) -> None:
    activity_id = _import(cc, [{"email": "a@b.co"}]).json()["activity_id"]
    deadline = time.monotonic() + 10
    state = ""
    while time.monotonic() < deadline and state != "completed":
        state = _poll(cc, activity_id)["state"]
        time.sleep(0.05)
    assert state == "completed"
