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


@pytest.mark.parametrize("level, shown", [("INFO", False), ("DEBUG", True)])
def test_celerys_per_task_lines_only_at_debug(level: str, shown: bool) -> None:
    """Celery's "Received task" and "Task ... succeeded" lines repeat each lead's outcome line:
    at INFO they are not even built (they were 7 % of the consumer's CPU); warnings stay."""
    from worker.base.log import configure_logging

    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    try:
        configure_logging(level)
        for name in ("celery.worker.strategy", "celery.app.trace"):
            logger = logging.getLogger(name)
            assert logger.isEnabledFor(logging.INFO) is shown, name
            assert logger.isEnabledFor(logging.WARNING)
        assert logging.getLogger("leadsync.delivery").isEnabledFor(logging.INFO)
    finally:
        for handler in list(root.handlers):
            if handler not in before[0]:
                root.removeHandler(handler)
        root.setLevel(before[1])
        for name in ("celery.worker.strategy", "celery.app.trace"):
            logging.getLogger(name).setLevel(logging.NOTSET)


def _scrub_every_pattern(text: str) -> str:
    """`scrub` as it was before its substring checks: every pattern on every text."""
    from worker.base import redaction as r

    text = r._OBJECT_VALUE.sub(
        lambda m: f"{m.group(1)}{m.group(2)}{m.group(1)}: {{{r.REDACTED}}}", text)
    text = r._FIELD_VALUE.sub(r._field_value, text)
    text = r._EMAIL_URL.sub("<email>", text)
    text = r._JWT.sub("<jwt>", text)
    text = r._BEARER.sub(lambda m: f"{m.group(1)} <redacted>", text)
    text = r._SECRET_FIELD.sub(lambda m: f"{m.group(1)}<redacted>", text)
    text = r._INTAKE_KEY.sub("lsk_<redacted>", text)
    text = r._EMAIL.sub(lambda m: r.redact_email(m.group(0)), text)
    return r._PHONE.sub(r._phone_or_date, text)


_SCRUB_CORPUS = [
    "GET /v3/contacts?email=jane.canary%40example.com HTTP/1.1",
    "Lead(email='jane@x.io', first_name='Canary', last_name=\"O'Canary\")",
    '{"first_name": "Jane \\"Canary\\" Roe", "custom_fields": {"a": "b}canary"}}',
    json.dumps({"body": json.dumps([[LEAD]])}), repr(LEAD), str(LEAD),
    "truncated: {'first_name': 'Cana...", "[type=string_type, input_value='Canary']",
    "Authorization: BEARER abcdefgh12345678", "basic   dXNlcjpwYXNzd29yZA==",
    "Refresh_Token=abcdef123456&x=1", "CLIENT_SECRET: 's3cr3tvalue'", "code=AbCdEf12",
    "PASSWORD = hunter22", "token:abcdefg", "eyJhbGciOi.eyJzdWIiOi.sig", "key lsk_abcdefgh",
    "call +1 (202) 555-0147 now", "date 2026-11-30 and 12345678", "phone=2025550147",
    "a@b.co", "x%40y.org", "address={'city': 'Boston'}", "custom_fields: {}", "short",
    "lead ld_b75b3759b83005b11910954fe6676c49 status=delivered attempt=1 latency_ms=7.2 "
    "path=sign_up_form contact_id=810161cd-f5ac-47cf-bdf6-5611fff94272 action=created",
    "", "=", ":", "email", "email:", "email=x", "\\\"phone\\\": \\\"+1 202 555 0147\\\"",
]


@pytest.mark.parametrize("text", _SCRUB_CORPUS)
def test_scrubs_substring_checks_change_no_output(text: str) -> None:
    """The checks that skip a pattern only skip patterns that could not match."""
    assert scrub(text) == _scrub_every_pattern(text)
    joined = " | ".join(_SCRUB_CORPUS)
    assert scrub(joined) == _scrub_every_pattern(joined)


def test_scrubs_substring_checks_hold_on_random_text() -> None:
    """2,000 seeded random mixes of the patterns' pieces: same output with and without checks."""
    import random

    pieces = ["email", "phone", "address", "custom_fields", "token", "Code", "SECRET", "bearer",
              "Basic", "lsk_", "eyJ", "%40", "@", ":", "=", " ", "'", '"', "\\", "{", "}",
              "+1", "202", "555-0147", "2026-11-30", "abcdef12", "x.io", "-", "(", ")", "."]
    rng = random.Random(20261130)
    for _ in range(2000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 24)))
        assert scrub(text) == _scrub_every_pattern(text), text
