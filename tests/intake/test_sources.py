"""Each source's own shape, mapped to a lead: HTML forms and Google Ads lead form webhooks."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from tests.intake.conftest import GOOGLE_KEY, Client
from tests.intake.formpage import submission
from tests.intake.test_api import queued
from worker.base.errors import InvalidLeadError
from worker.base.priority import queued as queue_length
from worker.intake.sources import form_to_lead, google_to_lead
from worker.leads.lead import parse_lead

# The shape Google documents for lead form webhooks (WebhookLead, user_column_data items).
GOOGLE_SAMPLE: dict[str, Any] = {
    "lead_id": "TeSter-123-ABCDEFGHIJKLMNOPQRSTUVWXYZ-abcdefghijklmnopqrstuvwxyz-0123456789",
    "user_column_data": [
        {"column_name": "Full Name", "string_value": "Grace Brewster Hopper",
         "column_id": "FULL_NAME"},
        {"column_name": "User Email", "string_value": "grace@example.com", "column_id": "EMAIL"},
        {"column_name": "User Phone", "string_value": "+16505550123",
         "column_id": "PHONE_NUMBER"},
        {"column_name": "Company Name", "string_value": "Navy", "column_id": "COMPANY_NAME"},
        {"column_name": "Postal Code", "string_value": "10001", "column_id": "POSTAL_CODE"},
        {"column_name": "What is your budget?", "string_value": "10k",
         "column_id": "BUDGET_QUESTION"},
    ],
    "api_version": "1.0",
    "form_id": 123456789,
    "campaign_id": 987654321,
    "google_key": GOOGLE_KEY,
    "is_test": False,
    "gcl_id": "EAIaIQobChMI",
    "adgroup_id": 20000000000,
    "creative_id": 30000000000,
}


def test_google_payload_maps_to_a_valid_lead_with_a_stable_id() -> None:
    lead = parse_lead(google_to_lead(GOOGLE_SAMPLE))
    assert (lead.email, lead.first_name, lead.last_name) == (
        "grace@example.com", "Grace", "Brewster Hopper")
    assert (lead.phone, lead.company, lead.source) == ("+16505550123", "Navy", "google-ads")
    assert lead.address is not None and lead.address.postal_code == "10001"
    assert lead.lead_id == "gads_" + GOOGLE_SAMPLE["lead_id"]
    assert lead.custom_fields == {}  # unmapped questions are not sent as unknown custom fields


def test_google_first_and_last_name_columns_win_over_full_name() -> None:
    payload = {**GOOGLE_SAMPLE, "user_column_data": [
        {"column_id": "FULL_NAME", "string_value": "Ignored Name"},
        {"column_id": "FIRST_NAME", "string_value": "Ada"},
        {"column_id": "LAST_NAME", "string_value": "Lovelace"},
        {"column_id": "WORK_EMAIL", "string_value": "ada@example.com"}]}
    lead = parse_lead(google_to_lead(payload))
    assert (lead.first_name, lead.last_name, lead.email) == ("Ada", "Lovelace", "ada@example.com")
    with pytest.raises(InvalidLeadError):
        google_to_lead({"lead_id": "x"})


def test_form_fields_map_and_control_fields_stay_out() -> None:
    lead = parse_lead(form_to_lead({
        "email": "f@example.com", "first_name": "Fay", "city": "Oslo", "consent": "yes",
        "cf.budget": "10k", "_key": "lsk_secret", "_gotcha": "", "unknown": "ignored"},
        "website"))
    assert lead.source == "website" and lead.consent is True
    assert lead.address is not None and lead.address.city == "Oslo"
    assert lead.custom_fields == {"budget": "10k"}
    assert "lsk_secret" not in lead.model_dump_json()


def test_google_webhook_is_queued_once_and_needs_its_key(
        intake: Client, redis_client: redis.Redis) -> None:
    post = intake.http.post
    assert post("/v1/google-ads", json={**GOOGLE_SAMPLE, "google_key": "wrong"}).status_code == 401
    first = post("/v1/google-ads", json=GOOGLE_SAMPLE)
    retried = post("/v1/google-ads", json=GOOGLE_SAMPLE)  # Google retries until it sees a 2xx
    assert first.status_code == retried.status_code == 202
    assert first.json() == retried.json()
    test_lead = post("/v1/google-ads", json={**GOOGLE_SAMPLE, "is_test": True,
                                             "lead_id": "test-lead"})
    assert test_lead.status_code == 200 and test_lead.json()["test"] is True
    assert [q["email"] for q in queued(redis_client)] == ["grace@example.com"]


def test_form_post_from_the_sample_page_redirects_to_the_thank_you_page(
        intake: Client, redis_client: redis.Redis) -> None:
    path, fields = submission({"email": "web@example.com", "first_name": "Wes"},
                              intake.form_key)
    answer = intake.http.post(path, data=fields, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "https://example.com/thanks"
    (lead,) = queued(redis_client)
    assert (lead["email"], lead["first_name"], lead["source"], lead["consent"]) == (
        "web@example.com", "Wes", "website", True)


def test_form_honeypot_drops_bots_quietly_and_keys_are_checked(
        intake: Client, redis_client: redis.Redis) -> None:
    path, fields = submission({"email": "bot@example.com", "_gotcha": "http://spam"},
                              intake.form_key)
    bot = intake.http.post(path, data=fields, follow_redirects=False)
    assert bot.status_code == 303  # the bot sees the same thank-you
    path, fields = submission({"email": "p@example.com"}, intake.key)  # a `leads` key
    assert intake.http.post(path, data=fields).status_code == 403
    path, fields = submission({"email": "p@example.com"}, intake.form_key)
    fields["_next"] = "https://evil.example.net/phish"
    assert intake.http.post(path, data=fields).status_code == 400
    path, fields = submission({"email": "not an email"}, intake.form_key)
    invalid = intake.http.post(path, data=fields, follow_redirects=False)
    assert invalid.status_code == 422 and invalid.json()["rejected"][0]["field"] == "email"
    assert queue_length(redis_client, "leads") == 0
