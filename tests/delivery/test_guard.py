"""What the guarded channel refuses to hand to Celery (and so keeps, with a reason)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from worker.base.names import SYNC_LEAD
from worker.broker.guard import envelope_problem
from worker.leads.lead import parse_lead
from worker.leads.wire import encode_message

KNOWN = {SYNC_LEAD, "leadsync.refresh_token"}


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
    from worker.broker.guard import GUARD_OPTION
    from worker.celery import make_app

    app = make_app(make_settings(redis_url="redis://127.0.0.1:1/0"))
    config = app.conf.broker_transport_options[GUARD_OPTION]
    assert {"leads", "leadsync-control"} <= config.task_queues
    assert {SYNC_LEAD, "leadsync.refresh_token", "leadsync.resume_parked"} <= set(
        config.task_names())


def _with(change: str) -> bytes:
    message = good()
    body = json.loads(message["body"])
    if change == "deep_envelope":
        return b"[" * 100_000 + json.dumps(message).encode() + b"]" * 100_000
    if change == "deep_body":
        message["body"] = "[" * 40 + message["body"] + "]" * 40
    elif change == "deep_lead_field":
        body[0][0]["custom_fields"] = {"k": json.loads("[" * 40 + "]" * 40)}
        message["body"] = json.dumps(body)
    elif change == "kombu_hook_raises":
        message["headers"]["id"] = {"__type__": "uuid", "__value__": "zz"}
    elif change == "id_not_a_string":
        message["headers"]["id"] = ["a"]
    elif change == "bad_eta":
        message["headers"]["eta"] = "soon"
    elif change == "empty_expires":
        message["headers"]["expires"] = ""
    elif change == "protocol_one_dict":
        message["body"] = json.dumps({"args": [], "kwargs": {}})
    elif change == "callbacks":
        body[2]["callbacks"] = "x"
        message["body"] = json.dumps(body)
    elif change == "tag_number":
        message["properties"]["delivery_tag"] = 7
    elif change == "compressed":
        message["headers"]["compression"] = "application/x-gzip"
    return json.dumps(message).encode()


@pytest.mark.parametrize(("change", "reason"), [
    ("deep_envelope", "list entry is nested deeper than 32 levels"),
    ("deep_body", "task body is nested deeper than 32 levels"),
    ("deep_lead_field", "task body is nested deeper than 32 levels"),
    ("kombu_hook_raises", "list entry is not JSON kombu can read (TypeError)"),
    ("id_not_a_string", "message has no `headers.id` string"),
    ("bad_eta", "`headers.eta` is not an ISO 8601 time"),
    ("empty_expires", "`headers.expires` is not an ISO 8601 time"),
    ("protocol_one_dict", "task body is not [args, kwargs, embed]"),
    ("callbacks", "task body carries callbacks, errbacks, a chain or a chord (leadsync takes "
                  "none)"),
    ("tag_number", "`properties.delivery_tag` must be a string of 1 to 256 characters"),
    ("compressed", "`headers.compression` has the wrong type"),
])
def test_what_kills_or_confuses_celery_is_refused_first(change: str, reason: str) -> None:
    assert envelope_problem(_with(change), KNOWN) == reason


def test_size_is_judged_before_anything_is_parsed() -> None:
    huge = b"[" * 2_000_000  # would be a RecursionError if parsed
    assert envelope_problem(huge, KNOWN, max_bytes=1_048_576) == (
        "message is 2000000 bytes, over LEADSYNC_MAX_MESSAGE_BYTES (1048576)")
    assert envelope_problem(b"\xff\xfe{}", KNOWN) == "list entry is not UTF-8 text"
    assert envelope_problem(json.dumps(good()), KNOWN, max_bytes=1_048_576) is None


def test_an_entry_recorded_by_the_pop_leaves_unacked_when_kept_aside(
    redis_client: Any,
) -> None:
    import time

    from worker.broker.guard import record_malformed, recorded_tags
    from worker.lua import script

    # cjson takes invalid UTF-8 that Python refuses: the pop records it, Python cannot decode it.
    message = good()
    message["properties"]["delivery_tag"] = "tag-1"
    entry = json.dumps(message).replace("ada@", "ad\\u00e1@").encode().replace(b"ada", b"\xffda")
    other = json.loads(encode_message(parse_lead({"email": "other@x.example"})))
    redis_client.lpush("leads", entry, json.dumps(other))
    for _ in range(2):
        script("reliable_pop").run(redis_client, ["unacked", "unacked_index", "leads"],
                                   [time.time(), "1"])
    assert redis_client.hlen("unacked") == 2
    tags = recorded_tags(redis_client, "unacked", entry)
    assert tags == ["tag-1"]
    record_malformed(redis_client, "k:malformed", entry, "list entry is not UTF-8 text",
                     unacked=("unacked", "unacked_index", tags))
    assert redis_client.hkeys("unacked") == [other["properties"]["delivery_tag"].encode()]
    (kept,) = [json.loads(raw) for raw in redis_client.lrange("k:malformed", 0, -1)]
    assert kept["reason"] == "list entry is not UTF-8 text"
    assert kept["size_bytes"] == len(entry)


def test_a_header_celery_would_log_is_kept_short() -> None:
    message = good()
    message["headers"]["argsrepr"] = "x" * 5000
    assert envelope_problem(json.dumps(message), KNOWN) == (
        "`headers.argsrepr` is longer than 4096 characters")


def test_a_large_integer_tag_recorded_by_the_pop_is_found_again(redis_client: Any) -> None:
    import time

    from worker.broker.guard import recorded_tags
    from worker.lua import script

    # 10**15 is where "%.14g" (1e+15) and Lua's '%d' (1000000000000000) part: a microsecond
    # timestamp as tag. The entry must be found, or a rejected message would come back forever.
    message = good()
    message["properties"]["delivery_tag"] = 10**15 + 7
    entry = json.dumps(message).encode()
    redis_client.lpush("leads", entry)
    script("reliable_pop").run(redis_client, ["unacked", "unacked_index", "leads"],
                               [time.time(), "1"])
    assert redis_client.hkeys("unacked") == [b"1000000000000007"]
    assert recorded_tags(redis_client, "unacked", entry) == ["1000000000000007"]
