"""POST /v1/leads and GET /v1/leads/{id} against the real private Redis (app in-process)."""

from __future__ import annotations

import json
import time

import redis

from tests.fixtures.leads import queue_entries
from tests.intake.conftest import WEBHOOK_SECRET, Client
from worker.account import Account
from worker.base.names import LEADS_QUEUE
from worker.base.priority import queued as queue_length
from worker.base.scope import Scope
from worker.intake.body import MAX_BATCH
from worker.intake.signatures import sign
from worker.leads.lead import parse_lead
from worker.leads.wire import parse_message


def queued(client: redis.Redis) -> list[dict[str, object]]:
    """Every lead on the queue (all its priority lists), read back as the worker reads it."""
    return [parse_message(raw).to_json_dict() for raw in queue_entries(client)]


def test_one_lead_is_queued_as_the_same_message_enqueue_leads_pushes(
        intake: Client, redis_client: redis.Redis) -> None:
    answer = intake.post("/v1/leads", {"email": " Ada@Example.com ", "first_name": "Ada"})
    assert answer.status_code == 202
    body = answer.json()
    expected = parse_lead({"email": "ada@example.com", "first_name": "Ada"}).lead_id
    assert body == {"lead_ids": [expected], "lead_id": expected}
    (lead,) = queued(redis_client)
    assert lead["email"] == "ada@example.com" and lead["first_name"] == "Ada"
    assert lead["lead_id"] == expected and lead["received_at"]
    (raw,) = [json.loads(entry) for entry in queue_entries(redis_client)]
    assert raw["headers"]["task"] == "leadsync.sync_lead"
    assert "ada@example.com" not in raw["headers"]["argsrepr"]


def test_batches_as_array_or_leads_object_and_a_reason_per_invalid_item(
        intake: Client, redis_client: redis.Redis) -> None:
    ok = intake.post("/v1/leads", [{"email": "a@example.com"}, {"email": "b@example.com"}])
    assert ok.status_code == 202 and len(ok.json()["lead_ids"]) == 2
    mixed = intake.post("/v1/leads", {"leads": [
        {"email": "c@example.com"}, {"email": "not-an-email"}, {"first_name": "No email"},
        {"email": "d@example.com", "favourite": "x"}]})
    assert mixed.status_code == 422
    body = mixed.json()
    assert len(body["lead_ids"]) == 1
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [
        (1, "email"), (2, "email"), (3, "favourite")]
    assert body["rejected"][0]["reason"] == "email: not a valid email address"
    assert "not-an-email" not in mixed.text  # reasons never echo the value
    assert {lead["email"] for lead in queued(redis_client)} == {
        "a@example.com", "b@example.com", "c@example.com"}


def test_the_same_lead_id_queues_once_and_answers_the_same(
        intake: Client, redis_client: redis.Redis) -> None:
    lead = {"email": "same@example.com", "lead_id": "crm-42"}
    first = intake.post("/v1/leads", lead)
    again = intake.post("/v1/leads", lead)
    same_content = intake.post("/v1/leads", [{"email": "x@example.com"}] * 2)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json() == {"lead_ids": ["crm-42"], "lead_id": "crm-42"}
    assert same_content.status_code == 202
    assert len(set(same_content.json()["lead_ids"])) == 1
    assert sorted(str(q["lead_id"]) for q in queued(redis_client)) == sorted(
        ["crm-42", same_content.json()["lead_ids"][0]])


def test_the_same_idempotency_key_answers_the_stored_answer_and_queues_nothing(
        intake: Client, redis_client: redis.Redis) -> None:
    headers = {"Idempotency-Key": "order-7"}
    batch = [{"email": "i1@example.com"}, {"email": "bad"}]
    first = intake.post("/v1/leads", batch, headers=headers)
    # A retry, even with a body that would now differ (fresh received_at), answers the same.
    again = intake.post("/v1/leads", batch, headers=headers)
    assert first.status_code == again.status_code == 422
    assert first.json() == again.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert queue_length(redis_client, LEADS_QUEUE) == 1
    ttl = redis_client.ttl(next(iter(redis_client.scan_iter("leadsync:intake:answer:*"))))
    assert 0 < ttl <= intake.settings.intake_idempotency_ttl_s


def test_size_type_and_batch_limits(make_intake: object, redis_client: redis.Redis) -> None:
    intake = make_intake(LEADSYNC_INTAKE_MAX_BODY_BYTES="2048")  # type: ignore[operator]
    big = intake.post("/v1/leads", {"email": "a@example.com", "company": "x" * 3000})
    assert big.status_code == 413
    form = intake.post("/v1/leads", data={"email": "a@example.com"})
    assert form.status_code == 415
    text = intake.post("/v1/leads", content=b"email=a", headers={"Content-Type": "text/plain"})
    assert text.status_code == 415
    broken = intake.post("/v1/leads", content=b"{", headers={"Content-Type": "application/json"})
    assert broken.status_code == 400
    assert queue_length(redis_client, LEADS_QUEUE) == 0


def test_a_batch_over_the_limit_is_refused_whole(
        make_intake: object, redis_client: redis.Redis) -> None:
    intake = make_intake(LEADSYNC_INTAKE_MAX_BODY_BYTES="10000000")  # type: ignore[operator]
    leads = [{"email": f"n{i}@example.com"} for i in range(MAX_BATCH + 1)]
    assert intake.post("/v1/leads", leads).status_code == 413
    assert intake.post("/v1/leads", leads[:MAX_BATCH]).status_code == 202
    assert queue_length(redis_client, LEADS_QUEUE) == MAX_BATCH


def test_credentials_missing_unknown_revoked_or_of_the_wrong_scope(
        intake: Client, redis_client: redis.Redis) -> None:
    from worker.intake.apikeys import ApiKeys

    lead = {"email": "a@example.com"}
    none = intake.http.post("/v1/leads", json=lead)
    assert none.status_code == 401
    assert intake.post("/v1/leads", lead, key="lsk_not-a-key").status_code == 401
    assert intake.post("/v1/leads", lead, key=intake.form_key).status_code == 403
    ApiKeys(Scope(intake.settings, redis_client)).revoke("crm")
    revoked = intake.post("/v1/leads", lead)
    assert revoked.status_code == 403 and revoked.json() == {"error": "API key revoked"}
    assert intake.get("/v1/leads/ld_x").status_code == 403
    assert queue_length(redis_client, LEADS_QUEUE) == 0


def test_keys_are_stored_only_as_hashes(intake: Client, redis_client: redis.Redis) -> None:
    dump = b" ".join(k + b" " + b" ".join(redis_client.hvals(k))
                     for k in redis_client.scan_iter("leadsync:intake:*")
                     if redis_client.type(k) == b"hash")
    assert intake.key.encode() not in dump and intake.form_key.encode() not in dump


def test_rate_limit_per_key_answers_429_with_retry_after(
        make_intake: object, redis_client: redis.Redis) -> None:
    intake = make_intake(LEADSYNC_INTAKE_RATE_LIMIT_PER_S="0.5",  # type: ignore[operator]
                         LEADSYNC_INTAKE_RATE_BURST="3")
    answers = [intake.post("/v1/leads", {"email": f"r{i}@example.com"}) for i in range(5)]
    codes = [a.status_code for a in answers]
    assert codes[:3] == [202, 202, 202] and 429 in codes[3:]
    limited = next(a for a in answers if a.status_code == 429)
    assert 1 <= int(limited.headers["Retry-After"]) <= 2
    assert queue_length(redis_client, LEADS_QUEUE) == codes.count(202)


def test_signed_webhook_fresh_once_and_refused_when_wrong_old_or_replayed(
        intake: Client, redis_client: redis.Redis) -> None:
    body = json.dumps({"email": "signed@example.com"}).encode()

    def send(timestamp: int, signature: str) -> int:
        headers = {"Content-Type": "application/json", "X-Leadsync-Source": "billing",
                   "X-Leadsync-Timestamp": str(timestamp), "X-Leadsync-Signature": signature}
        return int(intake.http.post("/v1/leads", content=body, headers=headers).status_code)

    now = int(time.time())
    good = sign(WEBHOOK_SECRET.encode(), now, body)
    assert send(now, sign(b"another-secret-0123456789", now, body)) == 401
    assert send(now - 301, sign(WEBHOOK_SECRET.encode(), now - 301, body)) == 401
    assert send(now, good) == 202
    assert send(now, good) == 401  # the same signature again: a replay
    assert [q["email"] for q in queued(redis_client)] == ["signed@example.com"]


def test_get_lead_state_from_the_ledger_without_personal_data(
        intake: Client, redis_client: redis.Redis) -> None:

    lead_id = intake.post("/v1/leads", {"email": "s@example.com", "phone": "+1 555 0100"}
                          ).json()["lead_id"]
    assert intake.get(f"/v1/leads/{lead_id}").json() == {"lead_id": lead_id, "state": "queued"}
    assert Account(intake.settings, redis_client).ledger.move(
        lead_id, "dead", reason_code="invalid_email", last_status=400) == (True, "dead_lettered")
    state = intake.get(f"/v1/leads/{lead_id}")
    assert state.status_code == 200
    assert state.json()["state"] == "dead_lettered"
    assert state.json()["reason_code"] == "invalid_email"
    assert "s@example.com" not in state.text and "555" not in state.text
    assert intake.get("/v1/leads/ld_unknown").status_code == 404


def test_health_and_readiness(intake: Client) -> None:
    assert intake.http.get("/healthz").status_code == 200
    assert intake.http.get("/readyz").json() == {"status": "ready"}
