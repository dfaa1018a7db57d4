"""Delivering one lead, in process, against the sandbox and the private Redis (no broker).

Each test follows a lead to where a user would look for it: the contact in Constant Contact,
its state in the ledger, the parked set or the dead letters.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

from tests.fixtures.delivery import DeliveryStack
from tests.fixtures.leads import pop_entry
from worker.account import Account
from worker.delivery.ratelimit import next_utc_midnight
from worker.leads.lead import parse_lead
from worker.leads.wire import parse_message

pytestmark = pytest.mark.redis


def lead(**fields: Any) -> Any:
    data = {"email": "ada.lovelace@engines.example", "first_name": "Ada", **fields}
    return parse_lead(data)


def contact(stack: DeliveryStack, email: str) -> dict[str, Any]:
    found = [c for c in stack.sandbox.contacts() if c["email_address"]["address"] == email]
    assert len(found) == 1, found
    return found[0]


def state(stack: DeliveryStack, client: redis.Redis, lead_id: str) -> dict[str, str]:
    return Account(stack.settings, client).ledger.get(lead_id)


@pytest.fixture
def stack(delivery_stack: Any) -> DeliveryStack:
    built: DeliveryStack = delivery_stack()
    return built


def test_consent_goes_through_sign_up_form_once_even_when_sent_twice(
    stack: DeliveryStack, redis_client: redis.Redis
) -> None:
    delivery = Account(stack.settings, redis_client).new_delivery()
    the_lead = lead(consent=True, phone="+1 202 555 0143", company="Engines Ltd")
    result = delivery.run(the_lead, task_id="t1")
    assert result.status == "delivered" and result.detail["action"] == "created"
    saved = contact(stack, the_lead.email)
    assert saved["email_address"]["permission_to_send"] == "explicit"
    assert saved["company_name"] == "Engines Ltd"
    assert saved["list_memberships"] == stack.settings.list_ids
    again = delivery.run(the_lead, task_id="t1-redelivered")
    assert again.status == "delivered" and again.duplicate
    assert stack.sandbox.stats()["sign_up_form"]["calls"] == 1
    record = state(stack, redis_client, the_lead.lead_id)
    assert record["state"] == "delivered" and record["contact_id"] == saved["contact_id"]


def test_without_consent_a_new_contact_is_created_with_implicit_permission(
    stack: DeliveryStack, redis_client: redis.Redis
) -> None:
    result = Account(stack.settings, redis_client).new_delivery().run(lead(job_title="Analyst"))
    assert result.status == "delivered" and result.detail["path"] == "contacts"
    saved = contact(stack, "ada.lovelace@engines.example")
    assert saved["email_address"]["permission_to_send"] == "implicit"
    assert saved["create_source"] == "Account" and saved["job_title"] == "Analyst"
    assert stack.sandbox.stats()["sign_up_form"]["calls"] == 0


def test_without_consent_an_unsubscribed_contact_stays_unsubscribed_and_keeps_its_fields(
    stack: DeliveryStack, redis_client: redis.Redis, make_cc: Any
) -> None:
    delivery = Account(stack.settings, redis_client).new_delivery()
    delivery.run(lead(last_name="Lovelace", company="Engines Ltd",
                      phone="+44 20 7946 0000"))
    saved = contact(stack, "ada.lovelace@engines.example")
    # The person unsubscribes in Constant Contact.
    with stack.sandbox.state.lock:
        stack.sandbox.state.store.contacts[saved["contact_id"]]["email_address"][
            "permission_to_send"] = "unsubscribed"
    result = delivery.run(lead(job_title="CTO", source="webinar"))
    assert result.status == "delivered" and result.detail["action"] == "updated"
    after = contact(stack, "ada.lovelace@engines.example")
    assert after["email_address"]["permission_to_send"] == "unsubscribed"
    assert after["job_title"] == "CTO"
    assert after["last_name"] == "Lovelace" and after["company_name"] == "Engines Ltd"
    assert [p["phone_number"] for p in after["phone_numbers"]] == ["+44 20 7946 0000"]
    assert after["update_source"] == "Account"


def test_a_list_the_account_lacks_is_dead_lettered_with_constant_contacts_message(
    stack: DeliveryStack, redis_client: redis.Redis
) -> None:
    account = Account(stack.settings, redis_client)
    missing = "00000000-0000-4000-8000-00000000dead"
    the_lead = lead(consent=True, list_ids=[missing])
    result = account.new_delivery().run(the_lead)
    assert result.status == "dead_lettered"
    letter = account.dead_letters.get(the_lead.lead_id)
    assert letter.reason_code == "http_404" and letter.last_status == 404
    assert "not found" in letter.reason and letter.attempts == 1
    assert letter.lead["email"] == the_lead.email  # kept for replay
    assert state(stack, redis_client, the_lead.lead_id)["state"] == "dead_lettered"


def test_no_list_anywhere_is_dead_lettered(
    delivery_stack: Any, redis_client: redis.Redis
) -> None:
    stack = delivery_stack(settings_env={"LEADSYNC_LIST_IDS": ""})
    result = Account(stack.settings, redis_client).new_delivery().run(lead(consent=True))
    assert result.status == "dead_lettered" and result.detail["reason"] == "invalid_lead"
    assert "LEADSYNC_LIST_IDS" in result.detail["detail"]


def test_server_errors_retry_with_growing_budget_then_dead_letter(
    delivery_stack: Any, redis_client: redis.Redis
) -> None:
    stack = delivery_stack(settings_env={"LEADSYNC_MAX_RETRIES": "3"})
    account = Account(stack.settings, redis_client)
    stack.sandbox.set_faults(fail_rate=1.0)
    delivery = account.new_delivery()
    the_lead = lead(consent=True)
    results = [delivery.run(the_lead) for _ in range(4)]
    assert [r.status for r in results] == ["retrying"] * 3 + ["dead_lettered"]
    assert [r.attempt for r in results] == [1, 2, 3, 4]
    assert all(r.spends_budget for r in results[:3])
    assert all(0 <= (r.countdown_s or 0) <= 2 for r in results[:3])
    # Each retry waited in Redis's schedule; the dead letter took the lead out of it again.
    assert account.schedule.due_at(the_lead.lead_id) is None
    letter = account.dead_letters.get(the_lead.lead_id)
    assert letter.reason_code == "retries_exhausted" and letter.last_status in (500, 503)


def test_quota_exceeded_parks_until_midnight_utc_and_resumes_then(
    delivery_stack: Any, redis_client: redis.Redis
) -> None:
    stack = delivery_stack(daily_quota=100)
    account = Account(stack.settings, redis_client)
    stack.sandbox.set_faults(quota_used=100)
    the_lead = lead(consent=True)
    result = account.new_delivery().run(the_lead)
    assert result.status == "parked" and result.detail["reason"] == "quota"
    lot = account.parking
    (parked,) = lot.entries()
    assert parked.lead.lead_id == the_lead.lead_id
    assert parked.resume_at == next_utc_midnight(parked.parked_at).timestamp()
    assert state(stack, redis_client, the_lead.lead_id).get("attempts", "0") == "0"  # no budget
    assert lot.resume_due(sending_possible=True, now=parked.resume_at - 1) == 0
    assert lot.resume_due(sending_possible=True, now=parked.resume_at + 1) == 1
    assert parse_message(pop_entry(redis_client)).lead_id == the_lead.lead_id  # type: ignore[arg-type]
    assert lot.entries() == [] and state(stack, redis_client, the_lead.lead_id)["state"] == "queued"


def test_reauth_required_parks_and_resumes_only_once_sending_is_possible(
    stack: DeliveryStack, redis_client: redis.Redis
) -> None:
    account = Account(stack.settings, redis_client)
    store = account.tokens
    record = store.read()
    assert record is not None
    store.update(record.generation, state="reauth_required")
    the_lead = lead(consent=True)
    result = account.new_delivery().run(the_lead)
    assert result.status == "parked" and result.detail["reason"] == "reauth"
    lot = account.parking
    assert lot.resume_due(sending_possible=False) == 0
    assert lot.resume_due(sending_possible=True) == 1
    assert stack.sandbox.stats()["api_requests"] == 0


def test_a_refused_token_asks_for_one_refresh_and_spends_no_budget(
    stack: DeliveryStack, redis_client: redis.Redis
) -> None:
    account = Account(stack.settings, redis_client)
    store = account.tokens
    record = store.read()
    assert record is not None
    # The stored access token is refused by the API (as a revoked one would be).
    store.replace(record.generation, record.with_(access_token=record.access_token[:-4] + "AAAA"))
    the_lead = lead(consent=True)
    delivery = account.new_delivery()
    first = delivery.run(the_lead)
    assert first.status == "retrying" and not first.spends_budget
    assert first.detail["reason"] == "unauthorized"
    assert redis_client.llen("leadsync-control") == 1  # one refresh task for the refresher
    second = delivery.run(the_lead)
    assert second.status == "retrying"
    assert redis_client.llen("leadsync-control") == 1  # de-duplicated
    assert state(stack, redis_client, the_lead.lead_id).get("attempts", "0") == "0"


def test_custom_fields_by_name_are_sent_by_id_and_unknown_names_dead_letter(
    stack: DeliveryStack, redis_client: redis.Redis, make_cc: Any
) -> None:
    from tests.fixtures.sandbox import CC

    cc = CC(stack.sandbox)
    cc.authorize()
    made = cc.call("POST", "/contact_custom_fields", json={"label": "Lead Score",
                                                            "type": "string"})
    assert made.status_code == 201, made.text
    field_id = made.json()["custom_field_id"]
    delivery = Account(stack.settings, redis_client).new_delivery()
    ok = delivery.run(lead(consent=True, custom_fields={"Lead Score": "42"}))
    assert ok.status == "delivered"
    saved = contact(stack, "ada.lovelace@engines.example")
    assert saved["custom_fields"] == [{"custom_field_id": field_id, "value": "42"}]
    bad = delivery.run(lead(consent=True, custom_fields={"Shoe Size": "9"}))
    assert bad.status == "dead_lettered" and "Shoe Size" in bad.detail["detail"]


def test_overlapping_writes_get_409_and_retry(
    delivery_stack: Any, redis_client: redis.Redis
) -> None:
    stack = delivery_stack(conflict_window_ms=60_000)
    delivery = Account(stack.settings, redis_client).new_delivery()
    assert delivery.run(lead(consent=True)).status == "delivered"
    second = lead(consent=True, first_name="Augusta")
    result = delivery.run(second)
    assert result.status == "retrying" and result.detail["reason"] == "conflict"
    stack.sandbox.set_faults(conflict_window_ms=0)
    assert delivery.run(second).status == "delivered"
    assert contact(stack, second.email)["first_name"] == "Augusta"


def test_a_timed_out_write_that_happened_is_retried_without_a_second_contact(
    stack: DeliveryStack, redis_client: redis.Redis
) -> None:
    stack.sandbox.set_faults(timeout_rate=1.0)
    delivery = Account(stack.settings, redis_client).new_delivery()
    the_lead = lead(consent=True)
    first = delivery.run(the_lead)
    assert first.status == "retrying" and first.spends_budget
    assert first.detail["reason"] == "transient"
    assert len(stack.sandbox.contacts()) == 1  # the server wrote it; the answer never came
    stack.sandbox.set_faults(timeout_rate=0.0)
    second = delivery.run(the_lead)
    assert second.status == "delivered" and second.detail["action"] == "updated"
    assert len(stack.sandbox.contacts()) == 1


def test_redis_down_at_the_start_hands_the_message_back_and_sends_nothing(
    stack: DeliveryStack,
) -> None:
    from worker.demo.embedded_redis import free_port
    from worker.ledger.durable import OutcomeNotRecordedError

    dead = redis.Redis(port=free_port(), socket_connect_timeout=0.3)
    settings = stack.settings.model_copy(update={"outcome_wait_s": 0.5})
    delivery = Account(settings, dead).new_delivery()
    with pytest.raises(OutcomeNotRecordedError):
        delivery.run(lead(consent=True), task_id="t-redis-down")
    assert stack.sandbox.contacts() == []  # nothing was sent without its bookkeeping


def test_a_retry_is_a_schedule_entry_with_the_message_kept(
    delivery_stack: Any, redis_client: redis.Redis
) -> None:
    from worker.leads.wire import parse_message

    stack = delivery_stack()
    account = Account(stack.settings, redis_client)
    stack.sandbox.set_faults(fail_rate=1.0)
    the_lead = lead(consent=True)
    result = account.new_delivery().run(the_lead, task_id="t-retry")
    assert result.status == "retrying"
    schedule = account.schedule
    due = schedule.due_at(the_lead.lead_id)
    assert due is not None
    assert schedule.promote(now=due - 0.01) == 0  # not due yet
    assert schedule.promote(now=due) == 1
    assert parse_message(pop_entry(redis_client)).lead_id == the_lead.lead_id
    ledger = account.ledger
    assert ledger.state(the_lead.lead_id) == "queued"
    stack.sandbox.set_faults(fail_rate=0.0)
    assert account.new_delivery().run(the_lead).status == "delivered"
    assert ledger.message(the_lead.lead_id) is None  # settled leads keep no message
    assert schedule.size() == 0
