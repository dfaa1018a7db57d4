"""No personal data in any log line of a real worker, nor in Flower (issue 11).

Producers may push the smallest accepted message (docs/notes/producers.md): no `argsrepr`, so
Celery falls back to its own repr of the lead in its log context. Every field of the lead holds a
canary; the worker runs for real (text and JSON logs, DEBUG and INFO) against the sandbox, a real
`celery flower` with credentials watches it, and no canary may show anywhere.
"""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest
import redis

from tests.fixtures.ops import Spawned, wait_for
from worker.demo.embedded_redis import free_port

pytestmark = pytest.mark.redis

CANARY = "canary"  # every personal value below contains it (any case)
PHONE_DIGITS = "2025550147"
VALID = {
    "email": "canary.person@canary-mail.example",
    "first_name": "Canaryfirst",
    "last_name": "Canarylast",
    "phone": "+1 202 555 0147",
    "company": "Canarycorp",
    "job_title": "Canarytitle",
    "address": {"street": "1 Canarystreet", "city": "Canarycity", "state": "Canarystate",
                "postal_code": "CANARY1", "country": "Canaryland"},
    "custom_fields": {"favourite_colour": "Canarycustom"},
    "source": "webform",
}
# Not a lead (an unknown field): dead-lettered, so the failure path's lines are checked too.
INVALID = {**VALID, "email": "canary.invalid@canary-mail.example", "nickname": "Canarynick"}
WORKER = ["celery", "-A", "worker", "worker", "-E", "--concurrency=2",
          "--hostname=pii-test@%h", "--without-mingle", "--without-gossip"]
FLOWER_AUTH = "ops:flower-canary-pass"


def smallest_message(lead: dict[str, Any], task_id: str) -> str:
    """docs/notes/producers.md, smallest accepted form: headers `task` and `id` only."""
    return json.dumps({
        "body": json.dumps([[lead], {}, {}]),
        "content-type": "application/json",
        "content-encoding": "utf-8",
        "headers": {"task": "leadsync.sync_lead", "id": task_id},
        "properties": {"delivery_tag": str(uuid.uuid4()),
                       "delivery_info": {"exchange": "", "routing_key": "leads"}},
    })


def leaks(text: str) -> list[str]:
    """Lines holding a canary or the phone number (digits only, any punctuation)."""
    return [line for line in text.splitlines()
            if CANARY in line.lower() or PHONE_DIGITS in re.sub(r"\D", "", line)]


def flower_get(port: int, path: str) -> Any:
    auth = "Basic " + base64.b64encode(FLOWER_AUTH.encode()).decode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     headers={"Authorization": auth})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return json.loads(answer.read())
    except (OSError, ValueError):
        return None


@pytest.mark.parametrize(("log_format", "log_level"),
                         [("text", "DEBUG"), ("json", "DEBUG"), ("text", "INFO"),
                          ("json", "INFO")])
def test_no_canary_in_worker_logs_or_flower(
    log_format: str, log_level: str, ops_stack: tuple[Any, dict[str, str]], spawned: Spawned,
    redis_client: redis.Redis,
) -> None:
    sandbox, env = ops_stack
    sandbox.state.store.add_custom_field("favourite_colour", "string", time.time(), {})
    env = {**env, "LEADSYNC_LOG_FORMAT": log_format, "LEADSYNC_LOG_LEVEL": log_level}
    port = free_port()
    spawned.start("flower", ["celery", "-A", "worker", "flower", "--address=127.0.0.1",
                             f"--port={port}"], {**env, "FLOWER_BASIC_AUTH": FLOWER_AUTH})
    spawned.start("worker", WORKER, env)
    wait_for(lambda: flower_get(port, "/api/workers?refresh=1"), 60, "flower and the worker")

    ids = {"valid": str(uuid.uuid4()), "invalid": str(uuid.uuid4())}
    redis_client.lpush("leads", smallest_message(VALID, ids["valid"]))
    redis_client.lpush("leads", smallest_message(INVALID, ids["invalid"]))

    def contact() -> dict[str, Any] | None:
        found = [c for c in sandbox.contacts() if c["email_address"]["address"] == VALID["email"]]
        return found[0] if found else None

    delivered = wait_for(contact, 60, "the canary lead in the sandbox")
    assert delivered["first_name"] == "Canaryfirst"  # the lead itself went through intact

    def flower_saw_both() -> dict[str, Any] | None:
        tasks = flower_get(port, "/api/tasks") or {}
        done = {i for i in ids.values() if tasks.get(i, {}).get("state") == "SUCCESS"}
        return tasks if done == set(ids.values()) else None

    tasks = wait_for(flower_saw_both, 60, "Flower to show both tasks finished")
    shown = [json.dumps(tasks)]
    shown += [json.dumps(flower_get(port, f"/api/task/info/{i}")) for i in ids.values()]
    assert all(s != "null" for s in shown)
    assert not leaks("\n".join(shown)), "personal data in Flower's API"

    # Both outcomes are logged (delivered, dead-lettered), then the logs are read whole.
    wait_for(lambda: "dead_letter" in spawned.log("worker"), 30, "the dead letter's log line")
    spawned.stop_all()
    text = spawned.log("worker")
    assert "delivered" in text
    if log_format == "json":
        lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        assert any(line.get("level") == "DEBUG" for line in lines) == (log_level == "DEBUG")
        # Celery's own context (the `data` extra) is there, with the arguments redacted.
        data = [line["data"] for line in lines if isinstance(line.get("data"), dict)]
        shown_args = [d["args"] for d in data
                      if d.get("args") and d.get("name") == "leadsync.sync_lead"]
        assert shown_args and all("lead_id" in a for a in shown_args), shown_args
    else:
        assert (" DEBUG " in text) == (log_level == "DEBUG")
    assert not leaks(text), "personal data in the worker log:\n" + "\n".join(leaks(text))[:3000]
    assert not leaks(spawned.log("flower"))
