"""Log records are scrubbed whole: message, arguments, exception text and every extra."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from worker.base.log import JsonFormatter, ScrubFilter, TextFormatter, install_scrubbing
from worker.base.redaction import redact_task_arguments, scrub, scrub_value

LEAD = {"email": "jane.canary@example.com", "first_name": "Janecanary",
        "last_name": "Roecanary", "phone": "+1 202 555 0147", "company": "Acmecanary",
        "address": {"city": "Bostoncanary", "state": "MA"},
        "custom_fields": {"favourite": "bluecanary"}, "source": "webform"}


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO, io.StringIO]]:
    """A logger writing through our filter to a text and a JSON stream."""
    install_scrubbing()
    text, js = io.StringIO(), io.StringIO()
    logger = logging.getLogger("tests.log.capture")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    for stream, formatter in ((text, TextFormatter()), (js, JsonFormatter())):
        handler = logging.StreamHandler(stream)
        handler.addFilter(ScrubFilter())
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    yield logger, text, js
    logger.handlers.clear()


def _clean(output: str) -> None:
    assert "canary" not in output.lower(), output
    assert "2025550147" not in output.replace(" ", "")


def test_celery_style_context_in_args_and_data_extra(capture: tuple) -> None:
    logger, text, js = capture
    context = {"id": "t-1", "name": "leadsync.sync_lead", "args": repr([LEAD]), "kwargs": "{}",
               "return_value": "{'status': 'delivered'}"}
    logger.info("Task %(name)s[%(id)s] succeeded: %(args)s", context, extra={"data": context})
    _clean(text.getvalue())
    _clean(js.getvalue())
    line = json.loads(js.getvalue())
    assert line["data"]["name"] == "leadsync.sync_lead"
    assert "ld_" in line["data"]["args"] and "j***@e***.com" in line["data"]["args"]
    assert context["args"] == repr([LEAD])  # the caller's dict is not changed


def test_lead_in_positional_args_extras_and_exceptions(capture: tuple) -> None:
    logger, text, js = capture
    try:
        raise ValueError(f"bad lead {LEAD}")
    except ValueError:
        logger.exception("failed on %s and %r", LEAD, json.dumps(LEAD).encode(),
                         extra={"lead": LEAD, "body": json.dumps({"body": json.dumps([[LEAD]])})})
    _clean(text.getvalue())
    _clean(js.getvalue())
    assert "source" in text.getvalue()  # non-personal fields stay readable


def test_celery_pool_debug_line_withholds_the_raw_request(capture: tuple) -> None:
    install_scrubbing()
    text = io.StringIO()
    pool = logging.getLogger("celery.pool")
    handler = logging.StreamHandler(text)
    handler.addFilter(ScrubFilter())
    pool.addHandler(handler)
    pool.setLevel(logging.DEBUG)
    try:
        pool.debug("TaskPool: Apply %s (args:%s kwargs:%s)", "<fn>",
                   repr(("leadsync.sync_lead", "id", {"x": 1}, b'[[{"nick": "canary"}]]')), "{}")
    finally:
        pool.removeHandler(handler)
    assert "canary" not in text.getvalue() and "TaskPool: Apply <fn>" in text.getvalue()


@pytest.mark.parametrize("text", [
    "GET /v3/contacts?email=jane.canary%40example.com HTTP/1.1",
    "Lead(email='jane@x.io', first_name='Canary', last_name=\"O'Canary\")",
    '{"first_name": "Jane \\"Canary\\" Roe", "custom_fields": {"a": "b}canary"}}',
    json.dumps({"body": json.dumps([[LEAD]])}),
    "truncated: {'first_name': 'Cana...",
    "[type=string_type, input_value='Canary', input_type=int]",
])
def test_scrub_removes_lead_values_in_any_quoting(text: str) -> None:
    _clean(scrub(text))


def test_scrub_keeps_masked_values_and_plain_words() -> None:
    redacted = "{'lead_id': 'ld_1', 'email': 'j***@e***.com', 'phone': '***47'}"
    assert scrub(redacted) == redacted
    assert scrub("state=delivered source=webform") == "state=delivered source=webform"


def test_task_arguments_become_ids_or_types() -> None:
    assert "ld_" in redact_task_arguments(repr([LEAD]))
    assert redact_task_arguments("['Canary', 3]") == "(<str>, <int>)"
    invalid = redact_task_arguments("[{'first_name': 'Canary'}]")
    assert invalid == "({'lead_id': None, 'invalid': True},)"
    assert "canary" not in redact_task_arguments("[{'email': 'canary@x.io'}, ...").lower()
    assert redact_task_arguments("") == ""
    assert scrub_value({"args": [LEAD]})["args"].startswith("({'lead_id': 'ld_")


def test_each_record_is_scrubbed_once_and_late_extras_still_are(
        capture: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    """The factory scrubs the text; the handler filter only scrubs `extra=` fields added after."""
    import worker.base.log as log_module
    calls: list[str] = []

    def counting_scrub(text: str) -> str:
        calls.append(text)
        return scrub(text)

    monkeypatch.setattr(log_module, "scrub", counting_scrub)
    logger, text, js = capture
    logger.info("lead %s", LEAD["email"], extra={"who": LEAD["email"]})
    _clean(text.getvalue())
    _clean(js.getvalue())
    assert json.loads(js.getvalue())["who"] == "j***@e***.com"
    assert len([c for c in calls if c.startswith("lead ")]) == 1, calls  # two handlers, one scrub
