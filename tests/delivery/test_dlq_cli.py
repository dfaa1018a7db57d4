"""`leadsync dlq list|show|replay|purge` on a private Redis, as an operator would use it."""

from __future__ import annotations

import json
import time

import pytest
import redis

from tests.fixtures.leads import pop_entry
from worker.account import Account
from worker.base.keys import Keys
from worker.base.names import LEADS_QUEUE
from worker.base.priority import queued
from worker.base.settings import load_settings
from worker.broker.guard import record_malformed
from worker.cli import main
from worker.cli.exit_codes import ExitCode
from worker.demo.embedded_redis import free_port
from worker.leads.lead import parse_lead
from worker.leads.wire import parse_message
from worker.ledger.deadletter import DeadLetter, DeadLetters

pytestmark = pytest.mark.redis

ADA = {"email": "ada@engines.example", "phone": "+44 20 7946 0000", "list_ids": []}


@pytest.fixture
def letters(monkeypatch: pytest.MonkeyPatch, redis_url: str,
            redis_client: redis.Redis) -> DeadLetters:
    monkeypatch.setenv("LEADSYNC_REDIS_URL", redis_url)
    settings = load_settings(_env_file=None)
    store = Account(settings, redis_client).dead_letters
    now = time.time()
    ada = parse_lead(ADA)
    store.add(DeadLetter(ada.lead_id, "HTTP 400 contacts.api.validation.error: bad", "http_400",
                         1, 400, now - 7200, now - 7200, ada.to_json_dict()))
    bob = parse_lead({"email": "bob@builders.example"})
    store.add(DeadLetter(bob.lead_id, "retries exhausted after 13 tries: HTTP 503",
                         "retries_exhausted", 13, 503, now - 60, now - 60, bob.to_json_dict()))
    store.add(DeadLetter("bad_0123456789", "lead: email is required", "invalid_lead", 1, None,
                         now, now, {"name": "no email"}, replayable=False))
    record_malformed(redis_client, Keys(), b"not json at all", "list entry is not JSON")
    return store


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["dlq", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_list_shows_every_letter_with_reason_and_filters(
    letters: DeadLetters, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "list")
    assert code == ExitCode.OK
    assert "4 dead letter(s)" in out
    for code_name in ("http_400", "retries_exhausted", "invalid_lead", "malformed"):
        assert code_name in out
    assert "ada@engines.example" not in out
    code, out, _ = run(capsys, "list", "--reason", "http_400", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["reason_code"] for r in rows] == ["http_400"] and rows[0]["attempts"] == 1
    _, out, _ = run(capsys, "list", "--older-than", "1h", "--json")
    assert [json.loads(line)["reason_code"] for line in out.splitlines()] == ["http_400"]
    _, out, _ = run(capsys, "list", "--newer-than", "5m", "--json")
    assert len(out.splitlines()) == 3


def test_show_masks_personal_data_unless_revealed(
    letters: DeadLetters, capsys: pytest.CaptureFixture[str]
) -> None:
    lead_id = parse_lead(ADA).lead_id
    code, out, _ = run(capsys, "show", lead_id)
    assert code == ExitCode.OK
    shown = json.loads(out)
    assert shown["lead"]["email"] == "a***@e***.example" and "7946" not in out
    assert shown["reason_code"] == "http_400" and shown["last_status"] == 400
    _, out, _ = run(capsys, "show", lead_id, "--reveal")
    assert json.loads(out)["lead"]["email"] == "ada@engines.example"
    code, _, err = run(capsys, "show", "ld_nothing")
    assert code == ExitCode.FAILURE and "no dead letter" in err


def test_replay_keeps_the_lead_id_and_resets_the_budget(
    letters: DeadLetters, capsys: pytest.CaptureFixture[str], redis_client: redis.Redis
) -> None:
    ada = parse_lead(ADA)
    code, out, _ = run(capsys, "replay", ada.lead_id)
    assert code == ExitCode.OK and "replayed 1" in out
    replayed = parse_message(pop_entry(redis_client))  # type: ignore[arg-type]
    assert replayed.lead_id == ada.lead_id and replayed.email == ada.email
    record = letters.ledger.get(ada.lead_id)
    assert record["state"] == "queued" and "attempts" not in record
    assert "http_400" not in run(capsys, "list")[1]


def test_replay_refuses_what_never_was_a_lead(
    letters: DeadLetters, capsys: pytest.CaptureFixture[str], redis_client: redis.Redis
) -> None:
    code, out, err = run(capsys, "replay", "--all", "--newer-than", "5m")
    assert code == ExitCode.FAILURE
    assert "replayed 1, refused 2" in out  # bob replayed; the invalid and the malformed refused
    assert "only be purged" in err
    assert queued(redis_client, LEADS_QUEUE) == 1


def test_purge_needs_a_choice_and_confirmation(
    letters: DeadLetters, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "purge")[0] == ExitCode.USAGE  # neither ids nor --all
    assert run(capsys, "purge", "--all")[0] == ExitCode.USAGE  # no terminal, no --yes
    code, out, _ = run(capsys, "purge", "--all", "--reason", "malformed", "--yes")
    assert code == ExitCode.OK and "purged 1" in out
    code, out, _ = run(capsys, "purge", "--all", "--yes")
    assert "purged 3" in out
    assert "no dead letters" in run(capsys, "list")[1]


def test_redis_down_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEADSYNC_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    code, _, err = run(capsys, "list")
    assert code == ExitCode.REDIS_UNAVAILABLE
    assert err.startswith("leadsync: Redis unavailable") and "Traceback" not in err
