"""The bulk path in process against the sandbox and the private Redis: staging, imports,
polls, settlement, refused rows, failed activities and crashes between the steps."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from tests.fixtures.delivery import DeliveryStack
from tests.fixtures.leads import pop_entry
from worker.account import Account
from worker.base.keys import BulkKeys
from worker.bulk.finish import Observed
from worker.bulk.importer import Importer
from worker.delivery.run import Delivery
from worker.leads.lead import Lead, parse_lead
from worker.leads.wire import parse_message
from worker.ledger import delivered
from worker.ledger.lead_state import LeadState

pytestmark = pytest.mark.redis

BULK_ENV = {"LEADSYNC_BULK": "always", "LEADSYNC_BULK_LINGER_S": "0",
            "LEADSYNC_BACKOFF_BASE_S": "0.01", "LEADSYNC_BACKOFF_MAX_S": "0.01"}


def leads(count: int, *, tag: str, **fields: Any) -> list[Lead]:
    return [parse_lead({"email": f"{tag}{i}@bulk.example", "first_name": f"P{i}",
                        "phone": "+1 202 555 0143", "address": {"city": "Boston"}, **fields})
            for i in range(count)]


def batch_ids(client: redis.Redis, keys: BulkKeys) -> list[str]:
    members: list[Any] = client.zrange(keys.batches, 0, -1)
    return [m.decode() for m in members]


def drain(importer: Importer, client: redis.Redis, timeout_s: float = 30.0) -> None:
    """Run the batcher/poller until nothing is staged or in a batch (deadline, no fixed wait)."""
    keys = importer.keys
    deadline = time.monotonic() + timeout_s
    while client.zcard(keys.staged) or client.zcard(keys.batches):
        assert time.monotonic() < deadline, "imports did not settle in time"
        importer.run()
        time.sleep(0.1)


def stage_all(delivery: Delivery, batch: list[Lead]) -> None:
    for item in batch:
        result = delivery.run(item, task_id=f"t-{item.lead_id}")
        assert result.status == LeadState.STAGED, result


@pytest.fixture
def stack(delivery_stack: Any) -> DeliveryStack:
    built: DeliveryStack = delivery_stack(settings_env=BULK_ENV)
    return built


def test_backlog_is_one_import_and_consented_leads_keep_sign_up_form(
        stack: DeliveryStack, redis_client: redis.Redis) -> None:
    account = Account(stack.settings, redis_client)
    delivery = account.new_delivery()
    backlog = leads(300, tag="nc")
    stage_all(delivery, backlog)
    consented = parse_lead({"email": "yes@bulk.example", "consent": True})
    assert delivery.run(consented).status == LeadState.DELIVERED  # not staged
    importer = account.importer()
    drain(importer, redis_client)
    stats = stack.sandbox.stats()
    assert stats["activities"]["imports"] == 1
    assert stats["activities"]["polls"] <= 3
    assert stats["sign_up_form"]["calls"] == 1
    ledger = account.ledger
    for item in backlog:
        entry = ledger.get(item.lead_id)
        assert entry["state"] == "delivered" and entry["action"] == "imported", entry
        assert ledger.message(item.lead_id) is None  # settled leads keep no message
        assert set(entry) == {"state", "first_seen", "updated_at", "action"}  # small at volume
    contacts = {c["email_address"]["address"]: c for c in stack.sandbox.contacts()}
    first = contacts["nc0@bulk.example"]
    assert first["email_address"]["permission_to_send"] == "implicit"
    assert first["phone_numbers"][0]["kind"] == "work"
    assert first["street_addresses"][0]["city"] == "Boston"
    assert contacts["yes@bulk.example"]["email_address"]["permission_to_send"] == "explicit"
    counts = redis_client.hgetall(f"{stack.settings.key_prefix}:stats")
    assert int(counts[b"imported"]) == 300
    # What `leadsync status` estimates the next backlog's finish from (worker/bulk/finish.py).
    counters = redis_client.hgetall(Account(stack.settings, redis_client).keys.bulk.counters)
    observed = Observed.from_counters({k.decode(): v.decode() for k, v in counters.items()})
    assert observed.staging_per_s is None  # 300 staged leads measure a trickle, not staging
    assert observed.row_bytes is not None and 50 < observed.row_bytes < 200
    assert observed.import_s is not None and 0 < observed.import_s < 30
    assert observed.polls_per_import == stats["activities"]["polls"]


def test_refused_rows_are_dead_letters_with_the_error_and_replay_works(
        stack: DeliveryStack, redis_client: redis.Redis) -> None:
    account = Account(stack.settings, redis_client)
    delivery = account.new_delivery()
    good = leads(50, tag="ok")
    bad = leads(10, tag="bad", custom_fields={"no_such_field": "x"})
    stage_all(delivery, good + bad)
    drain(account.importer(), redis_client)
    letters = account.dead_letters
    ledger = account.ledger
    for item in bad:
        letter = letters.get(item.lead_id)
        assert letter.reason_code == "import_refused"
        assert "no_such_field" in letter.reason and "Line " in letter.reason
        assert item.email not in letter.reason  # the email is scrubbed, never kept in clear
        assert ledger.state(item.lead_id) == "dead_lettered"
    assert all(ledger.state(i.lead_id) == "delivered" for i in good)
    # The field is created; a replay sends the lead through the queue again.
    stack_api = stack.sandbox
    stack_api.state.store.custom_fields["cf1"] = {"custom_field_id": "cf1",
                                                  "name": "no_such_field",
                                                  "label": "no_such_field", "type": "string"}
    letters.replay(bad[0].lead_id)
    assert ledger.state(bad[0].lead_id) == "queued"
    replayed = parse_message(pop_entry(redis_client))  # type: ignore[arg-type]
    assert delivery.run(replayed).status == LeadState.STAGED
    drain(account.importer(), redis_client)
    assert ledger.get(bad[0].lead_id)["action"] == "imported"


def resend(stack: DeliveryStack, client: redis.Redis, delivery: Delivery) -> int:
    """Promote every scheduled retry (as if their time had come) and stage them again."""
    Account(stack.settings, client).schedule.promote_all(now=time.time() + 5)
    staged = 0
    while (raw := pop_entry(client)) is not None:
        assert delivery.run(parse_message(raw)).status == LeadState.STAGED  # type: ignore[arg-type]
        staged += 1
    return staged


@pytest.mark.parametrize("end", ["failed", "timed_out", "cancelled"])
def test_an_activity_that_ends_failed_timed_out_or_cancelled_sends_its_leads_back(
        delivery_stack: Any, redis_client: redis.Redis, end: str) -> None:
    """The sandbox ends the first import so (`timed_out`/`cancelled` after writing half of the
    rows); every lead goes back spending one try, and the second import delivers each once."""
    stack = delivery_stack(settings_env=BULK_ENV, **{f"{end}_imports": 1})
    account = Account(stack.settings, redis_client)
    delivery = account.new_delivery()
    batch = leads(20, tag=f"{end}-")
    stage_all(delivery, batch)
    importer = account.importer()
    drain(importer, redis_client)
    ledger = account.ledger
    for item in batch:
        entry = ledger.get(item.lead_id)
        assert entry["state"] == "retrying" and entry["last_reason"] == f"import_{end}", entry
        assert entry["attempts"] == "1"  # one try spent
    assert stack.sandbox.stats()["contacts"]["count"] == (0 if end == "failed" else 10)
    assert resend(stack, redis_client, delivery) == 20
    drain(importer, redis_client)
    assert all(ledger.get(i.lead_id)["action"] == "imported" for i in batch)
    stats = stack.sandbox.stats()
    assert stats["activities"]["imports"] == 2 and stats["contacts"]["count"] == 20
    counts = redis_client.hgetall(f"{stack.settings.key_prefix}:stats")
    assert int(counts[b"imported"]) == 20  # the half written twice is counted once
    bulk_keys = Account(stack.settings, redis_client).keys.bulk
    assert int(redis_client.hget(bulk_keys.counters, "resent") or 0) == 1


@pytest.mark.parametrize("end", ["failed", "timed_out", "cancelled"])
def test_leads_sent_back_more_often_than_the_retry_budget_are_dead_letters(
        delivery_stack: Any, redis_client: redis.Redis, end: str) -> None:
    stack = delivery_stack(settings_env={**BULK_ENV, "LEADSYNC_MAX_RETRIES": "1"},
                           **{f"{end}_imports": 2})
    account = Account(stack.settings, redis_client)
    delivery = account.new_delivery()
    batch = leads(5, tag=f"x{end}-")
    stage_all(delivery, batch)
    importer = account.importer()
    drain(importer, redis_client)  # first end: back to the retry schedule (1 try of 1 spent)
    assert resend(stack, redis_client, delivery) == 5
    drain(importer, redis_client)  # second end: no try left
    assert resend(stack, redis_client, delivery) == 0  # nothing scheduled any more
    letters = account.dead_letters
    ledger = account.ledger
    for item in batch:
        letter = letters.get(item.lead_id)
        assert letter.reason_code == "retries_exhausted"
        assert letter.reason == f"retries exhausted after 2 tries: the import activity ended {end}"
        assert letter.attempts == 2 and letter.replayable  # as the reason says
        assert ledger.state(item.lead_id) == "dead_lettered"
    assert letters.counts_by_reason() == {"retries_exhausted": 5}
    assert stack.sandbox.stats()["activities"]["imports"] == 2


def test_a_crash_after_the_import_but_before_its_id_is_stored_resends_and_counts_once(
        stack: DeliveryStack, redis_client: redis.Redis) -> None:
    account = Account(stack.settings, redis_client)
    delivery = account.new_delivery()
    batch = leads(30, tag="c")
    stage_all(delivery, batch)
    importer = account.importer()
    keys = account.keys.bulk
    importer.run()  # formed and sent
    (batch_id,) = batch_ids(redis_client, keys)
    assert redis_client.hget(keys.batch(batch_id), "activity_id")
    # As if the process died between the 201 and storing the id: the batch has none.
    redis_client.hdel(keys.batch(batch_id), "activity_id")
    redis_client.hset(keys.batch(batch_id), "next_at", "0")
    drain(importer, redis_client)
    assert stack.sandbox.stats()["activities"]["imports"] == 2  # re-sent: an upsert by email
    ledger = account.ledger
    assert all(ledger.state(i.lead_id) == "delivered" for i in batch)
    counts = redis_client.hgetall(f"{stack.settings.key_prefix}:stats")
    assert int(counts[b"imported"]) == 30  # nobody counted twice
    assert len({c["email_address"]["address"] for c in stack.sandbox.contacts()}) == 30


def test_settling_the_same_batch_twice_counts_nobody_twice(
        stack: DeliveryStack, redis_client: redis.Redis) -> None:
    account = Account(stack.settings, redis_client)
    delivery = account.new_delivery()
    batch = leads(10, tag="s")
    stage_all(delivery, batch)
    importer = account.importer()
    keys = account.keys.bulk
    importer.run()
    (batch_id,) = batch_ids(redis_client, keys)
    saved: dict[Any, Any] = redis_client.hgetall(keys.batch(batch_id))
    drain(importer, redis_client)
    # As if the settling process died before dropping the batch: it is there again.
    redis_client.hset(keys.batch(batch_id), mapping={**saved, b"next_at": b"0"})
    redis_client.zadd(keys.batches, {batch_id: 0})
    drain(importer, redis_client)
    assert int(redis_client.hget(account.keys.stats, "imported") or 0) == 10
    assert delivered.counts(redis_client, account.keys) == delivered.Delivered(10, 10)


def test_a_redelivered_copy_of_a_staged_lead_does_nothing(
        stack: DeliveryStack, redis_client: redis.Redis) -> None:
    account = Account(stack.settings, redis_client)
    delivery = account.new_delivery()
    (item,) = leads(1, tag="dup")
    stage_all(delivery, [item])
    again = delivery.run(item, task_id="another-copy")
    assert again.duplicate and again.status == LeadState.STAGED
    assert redis_client.zcard(account.keys.bulk.staged) == 1


def test_the_queued_activities_429_is_a_throttle_that_spends_no_try(
        delivery_stack: Any, redis_client: redis.Redis) -> None:
    stack = delivery_stack(settings_env=BULK_ENV, max_queued_activities=0)
    account = Account(stack.settings, redis_client)
    delivery = account.new_delivery()
    batch = leads(5, tag="q")
    stage_all(delivery, batch)
    importer = account.importer()
    importer.run()
    keys = account.keys.bulk
    (batch_id,) = batch_ids(redis_client, keys)
    saved = redis_client.hgetall(keys.batch(batch_id))
    assert b"activity_id" not in saved
    assert float(saved[b"next_at"]) > time.time() + 20  # waits about 30 s, then tries again
    assert int(redis_client.hget(keys.counters, "throttled") or 0) == 1
    ledger = account.ledger
    assert all(ledger.state(i.lead_id) == "staged" for i in batch)
    assert all(ledger.get(i.lead_id).get("attempts", "0") == "0" for i in batch)


def test_an_import_past_its_poll_cap_sends_its_leads_back(
        delivery_stack: Any, redis_client: redis.Redis) -> None:
    stack = delivery_stack(settings_env={**BULK_ENV, "LEADSYNC_BULK_MAX_POLLS": "1"},
                           activity_step_s=3600)  # the activity never finishes
    account = Account(stack.settings, redis_client)
    delivery = account.new_delivery()
    batch = leads(5, tag="cap")
    stage_all(delivery, batch)
    drain(Account(stack.settings, redis_client).importer(), redis_client)
    ledger = account.ledger
    for item in batch:
        entry = ledger.get(item.lead_id)
        assert entry["state"] == "retrying" and entry["last_reason"] == "import_poll_cap"
    assert stack.sandbox.stats()["activities"] == {"imports": 1, "polls": 1}
