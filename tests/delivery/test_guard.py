"""What the guarded channel refuses to hand to Celery (and so keeps, with a reason)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from worker.guard import envelope_problem
from worker.lead import parse_lead
from worker.wire import TASK_NAME, encode_message

KNOWN = {TASK_NAME, "leadsync.refresh_token"}


def good() -> dict[str, Any]:
    message: dict[str, Any] = json.loads(encode_message(parse_lead({"email": "ada@x.example"})))
    return message


def test_what_producers_send_passes_plain_and_base64() -> None:
    assert envelope_problem(json.dumps(good()), KNOWN) is None
    message = good()  # what kombu itself publishes: base64 body
    message["body"] = base64.b64encode(message["body"].encode()).decode()
    message["properties"]["body_encoding"] = "base64"
    assert envelope_problem(json.dumps(message), KNOWN) is None


def _broken(change: str) -> dict[str, Any]:
    message = good()
    if change == "no_exchange":
        del message["properties"]["delivery_info"]["exchange"]
    elif change == "no_task":
        del message["headers"]["task"]
    elif change == "unknown_task":
        message["headers"]["task"] = "leadsync.no_such_task"
    elif change == "pickle":
        message["content-type"] = "application/x-python-serialize"
    elif change == "body_object":
        message["body"] = {"not": "text"}
    elif change == "bad_base64":
        message["properties"]["body_encoding"] = "base64"
        message["body"] = "!!not base64"
    elif change == "rot13":
        message["properties"]["body_encoding"] = "rot13"
    elif change == "body_not_json":
        message["body"] = "{not json"
    return message


@pytest.mark.parametrize(("change", "reason"), [
    ("no_exchange", "`properties.delivery_info` needs `exchange` and `routing_key` strings"),
    ("no_task", "message has no `headers.task` naming the task"),
    ("unknown_task", "unknown task 'leadsync.no_such_task'"),
    ("pickle", "`content-type` must be 'application/json'"),
    ("body_object", "message `body` is not a string"),
    ("bad_base64", "message `body` is not valid base64 of UTF-8 text"),
    ("rot13", "`properties.body_encoding` must be 'base64' or absent"),
    ("body_not_json", "task body is not JSON"),
])
def test_messages_celery_would_drop_or_die_on_get_a_reason(change: str, reason: str) -> None:
    assert envelope_problem(json.dumps(_broken(change)), KNOWN) == reason


def test_the_reason_never_repeats_the_lead() -> None:
    message = _broken("body_not_json")
    message["body"] = '{"email": "secret.person@x.example"'
    assert "secret.person" not in str(envelope_problem(json.dumps(message), KNOWN))


def test_replies_on_other_queues_need_only_a_kombu_envelope() -> None:
    # A ping's reply queue carries kombu messages with no task: they must still pass.
    reply = _broken("no_task")
    assert envelope_problem(json.dumps(reply)) is None
    assert envelope_problem(json.dumps(reply), KNOWN) is not None


def test_any_consumer_knows_leadsyncs_tasks_without_a_worker_having_imported_them(
    make_settings: Any
) -> None:
    # A plain kombu consumer (a benchmark, a script) judges messages as the worker does.
    from worker.celery import make_app
    from worker.guard import GUARD_OPTION

    app = make_app(make_settings(redis_url="redis://127.0.0.1:1/0"))
    config = app.conf.broker_transport_options[GUARD_OPTION]
    assert {"leads", "leadsync-control"} <= config.task_queues
    assert {TASK_NAME, "leadsync.refresh_token", "leadsync.resume_parked"} <= set(
        config.task_names())
