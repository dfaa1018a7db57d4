"""Any language, one Redis command: a plain-JSON LPUSH is consumed by a real `celery worker`.

The worker is the probe app (tests/leads/probe_app.py): `leadsync.sync_lead` on queue `leads`
recording its arguments, so these tests prove the wire contract on their own. The message in
`_documented_message` is written out by hand, as a Java or Node producer would, not built by
worker.leads.wire.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from typing import Any

import pytest
import redis

from tests.fixtures.leads import REPO
from worker.base.keys import Keys
from worker.leads.enqueue import enqueue_lead
from worker.leads.lead import parse_lead


def _documented_message(lead: dict[str, Any], task_id: str) -> str:
    """docs/notes/producers.md, "The message": the full form."""
    return json.dumps(
        {
            "body": json.dumps(
                [[lead], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
            ),
            "content-type": "application/json",
            "content-encoding": "utf-8",
            "headers": {
                "lang": "py",
                "task": "leadsync.sync_lead",
                "id": task_id,
                "retries": 0,
                "root_id": task_id,
                "parent_id": None,
                "argsrepr": "(lead,)",
                "kwargsrepr": "{}",
            },
            "properties": {
                "delivery_tag": str(uuid.uuid4()),
                "correlation_id": task_id,
                "delivery_mode": 2,
                "priority": 0,
                "delivery_info": {"exchange": "", "routing_key": "leads"},
            },
        }
    )


def _minimal_message(lead: dict[str, Any], task_id: str) -> str:
    """The smallest message kombu and Celery accept: no retries, eta, root_id, argsrepr."""
    return json.dumps(
        {
            "body": json.dumps([[lead], {}, {}]),
            "content-type": "application/json",
            "content-encoding": "utf-8",
            "headers": {"task": "leadsync.sync_lead", "id": task_id},
            "properties": {
                "delivery_tag": str(uuid.uuid4()),
                "delivery_info": {"exchange": "", "routing_key": "leads"},
            },
        }
    )


def _envelope(body: str, task: str = "leadsync.sync_lead") -> str:
    return json.dumps(
        {
            "body": body,
            "content-type": "application/json",
            "content-encoding": "utf-8",
            "headers": {"task": task, "id": str(uuid.uuid4())},
            "properties": {
                "delivery_tag": str(uuid.uuid4()),
                "delivery_info": {"exchange": "", "routing_key": "leads"},
            },
        }
    )


def test_raw_lpush_of_the_documented_message_reaches_the_task(
    probe_client: redis.Redis, probe_received: Any
) -> None:
    lead = {"email": "raw.producer@example.com", "first_name": "Raw", "lead_id": "crm-1"}
    task_id = str(uuid.uuid4())
    probe_client.lpush("leads", _documented_message(lead, task_id))

    (record,) = probe_received(1)
    assert record["id"] == task_id
    assert record["args"] == [lead]  # the lead is the single positional argument, unchanged
    assert record["kwargs"] == {}
    assert parse_lead(record["args"][0]).lead_id == "crm-1"


def test_minimal_message_without_retries_eta_or_argsrepr_is_accepted(
    probe_client: redis.Redis, probe_received: Any
) -> None:
    leads = [{"email": f"minimal{i}@example.com"} for i in range(3)]
    for lead in leads:
        probe_client.lpush("leads", _minimal_message(lead, str(uuid.uuid4())))

    records = probe_received(3)
    assert sorted(r["args"][0]["email"] for r in records) == sorted(x["email"] for x in leads)
    assert all(r["retries"] == 0 for r in records)


def test_enqueue_lead_pushes_the_same_contract(
    probe_redis_url: str, probe_client: redis.Redis, probe_received: Any, lead_data: dict[str, Any]
) -> None:
    lead_id = enqueue_lead(lead_data, redis=probe_client)

    (record,) = probe_received(1)
    assert len(record["args"]) == 1 and record["kwargs"] == {}
    received = parse_lead(record["args"][0])
    assert received == parse_lead(lead_data)
    assert received.lead_id == lead_id
    # What Flower and worker logs show carries the id, never the address.
    assert lead_id in record["argsrepr"]
    assert "jane.roe@example.com" not in record["argsrepr"].lower()


def test_celery_call_delivers_the_lead_as_one_argument_with_a_redacted_repr(
    probe_redis_url: str, probe_client: redis.Redis, probe_received: Any
) -> None:
    lead = {"email": "cli.caller@example.com", "phone": "+1 555 123 4567", "source": "cli"}
    env = {**os.environ, "LEADSYNC_REDIS_URL": probe_redis_url}
    subprocess.run(
        [sys.executable, "-m", "celery", "-A", "tests.leads.probe_app", "call",
         "leadsync.sync_lead", "--args", json.dumps([lead])],
        cwd=REPO, env=env, check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    (record,) = probe_received(1)
    assert record["args"] == [lead] and record["kwargs"] == {}
    assert "cli.caller@example.com" not in record["argsrepr"]
    assert "555 123 4567" not in record["argsrepr"]
    assert parse_lead(lead).lead_id in record["argsrepr"]


def test_malformed_bodies_do_not_stop_the_worker(
    probe_client: redis.Redis, probe_received: Any, probe_worker: subprocess.Popen[str]
) -> None:
    bad = [
        _envelope("[[{"),  # body is not JSON
        _envelope(json.dumps([[], {"lead": {}}, {}])),  # wrong task args (the task decides)
        _envelope(json.dumps([[{"email": "x@example.com"}], {}, {}]), "leadsync.no_such_task"),
    ]
    for message in bad:
        probe_client.lpush("leads", message)
    good = {"email": "after.the.bad.ones@example.com"}
    probe_client.lpush("leads", _minimal_message(good, str(uuid.uuid4())))

    records = probe_received(2)
    assert [r["args"] for r in records] == [[], [good]]  # in order; the bad ones skipped
    assert records[0]["kwargs"] == {"lead": {}}
    assert probe_client.llen("leads") == 0  # every bad message was taken off the queue
    assert probe_worker.poll() is None  # and the worker is still running


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("not json at all", "list entry is not JSON"),
        (_envelope('{"not": "a protocol-2 body"}'), "task body is not [args, kwargs, embed]"),
    ],
    ids=["envelope-not-json", "body-wrong-shape"],
)
def test_a_broken_envelope_is_set_aside_and_the_worker_goes_on(
    entry: str, reason: str, probe_client: redis.Redis, probe_received: Any,
    probe_worker: subprocess.Popen[str],
) -> None:
    """Stock Celery 5.7 / kombu 5.7 stop the worker on both (worker/broker/guard.py explains)."""
    probe_client.delete(Keys().malformed)
    probe_client.lpush("leads", entry)
    probe_client.lpush("leads", _minimal_message({"email": "next@example.com"}, "t-1"))

    (record,) = probe_received(1)
    assert record["args"] == [{"email": "next@example.com"}]
    assert probe_worker.poll() is None
    (kept,) = [json.loads(raw) for raw in probe_client.lrange(Keys().malformed, 0, -1)]
    assert reason in kept["reason"]  # rejected with a reason, and the entry is kept
    probe_client.delete(Keys().malformed)


def test_the_documented_redis_cli_command_delivers_the_lead(
    probe_redis_url: str, probe_client: redis.Redis, probe_received: Any
) -> None:
    """Runs the `redis-cli` block of docs/notes/producers.md as written (needs redis-cli)."""
    doc = (REPO / "docs" / "notes" / "producers.md").read_text(encoding="utf-8")
    block = doc.split("<!-- redis-cli-example", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    redis_cli = shutil.which("redis-cli")
    assert redis_cli, "redis-cli is needed to check the documented example"
    env = {**os.environ, "REDIS_URL": probe_redis_url}
    subprocess.run(["bash", "-c", block], env=env, check=True, capture_output=True, timeout=30)

    (record,) = probe_received(1)
    assert record["args"][0]["email"] == "jane.roe@example.com"
    assert parse_lead(record["args"][0]).consent is True
