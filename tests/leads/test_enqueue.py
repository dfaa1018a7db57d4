"""Python producers and `leadsync enqueue`: what lands on the `leads` list, what is rejected and
how it is reported (line numbers, redacted reasons, exit codes)."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.fixtures.leads import REPO, queue_entries
from worker.base.errors import InvalidLeadError, RedisUnavailableError
from worker.base.priority import queued
from worker.cli import main
from worker.cli.exit_codes import ExitCode
from worker.demo.embedded_redis import free_port
from worker.leads.enqueue import enqueue_lead, enqueue_leads
from worker.leads.lead import parse_lead
from worker.leads.wire import parse_message

LIST_A = "0c4a6c36-3a5b-11ee-8c55-fa163e56c9b0"
LIST_B = "1d5b7d47-4b6c-11ee-9d66-0b274f67dac1"


def _queued(client: redis.Redis) -> list[Any]:
    """Leads on queue `leads` in the order the fetch takes them (consented first)."""
    return [parse_message(raw) for raw in queue_entries(client)]


def test_enqueue_lead_pushes_one_plain_json_message(
    redis_client: redis.Redis, lead_data: dict[str, Any]
) -> None:
    lead_id = enqueue_lead(lead_data, redis=redis_client)
    (raw,) = redis_client.lrange("leads", 0, -1)
    message = json.loads(raw)
    assert message["headers"]["task"] == "leadsync.sync_lead"
    assert message["properties"]["delivery_info"]["routing_key"] == "leads"
    assert message["properties"]["priority"] == 0  # consented: ahead of any backlog
    assert "body_encoding" not in message["properties"]  # plain JSON, no base64
    lead = parse_message(raw)
    assert lead.lead_id == lead_id and lead == parse_lead(lead_data)
    assert "jane" not in message["headers"]["argsrepr"].lower()


def test_received_at_is_stamped_only_when_missing(redis_client: redis.Redis) -> None:
    before = datetime.now(UTC)
    enqueue_lead({"email": "no.time@example.com"}, redis=redis_client)
    enqueue_lead(
        {"email": "timed@example.com", "received_at": "2023-02-03T04:05:06Z"}, redis=redis_client
    )
    stamped, given = _queued(redis_client)
    assert stamped.received_at is not None and before <= stamped.received_at <= datetime.now(UTC)
    assert given.received_at == datetime(2023, 2, 3, 4, 5, 6, tzinfo=UTC)


def test_an_invalid_lead_raises_and_pushes_nothing(redis_client: redis.Redis) -> None:
    with pytest.raises(InvalidLeadError) as caught:
        enqueue_lead({"email": "not-an-address", "first_name": "X"}, redis=redis_client)
    assert caught.value.field == "email"
    assert queued(redis_client, "leads") == 0


def test_redis_down_is_one_clear_error() -> None:
    client = redis.Redis(
        host="127.0.0.1", port=free_port(), password="s3cret-pass", socket_connect_timeout=1
    )
    with pytest.raises(RedisUnavailableError) as caught:
        enqueue_lead({"email": "a@example.com"}, redis=client)
    assert str(caught.value).startswith("Redis unavailable at 127.0.0.1:")
    assert "s3cret" not in str(caught.value)


def test_ten_thousand_mixed_rows_in_one_run(redis_client: redis.Redis) -> None:
    rows: list[object] = []
    bad_indexes = set()
    for i in range(10_000):
        if i % 7 == 3:
            rows.append({"email": f"broken{i}"})
            bad_indexes.add(i)
        elif i % 7 == 5:
            rows.append({"email": f"u{i}@example.com", "list_ids": ["nope"]})
            bad_indexes.add(i)
        else:
            rows.append({"email": f"u{i}@example.com", "first_name": "N" * 60})
    batches: list[int] = []

    report = enqueue_leads(rows, redis=redis_client, progress=lambda r: batches.append(r.enqueued))

    good = 10_000 - len(bad_indexes)
    assert (report.enqueued, report.rejected_count) == (good, len(bad_indexes))
    assert {r.index for r in report.rejected} == bad_indexes  # never stopped at the first
    assert {r.field for r in report.rejected} == {"email", "list_ids"}
    assert report.truncated == good  # every good row had its first_name cut, and says so
    assert queued(redis_client, "leads") == good
    assert len(set(report.lead_ids)) == good
    assert batches[-1] == good and len(batches) == -(-good // 1000)  # pipelined in batches


def test_celery_publishes_redacted_reprs(redis_url: str, make_settings: Any) -> None:
    from worker.celery import make_app

    app = make_app(make_settings(redis_url=redis_url))
    lead = {"email": "through.celery@example.com", "phone": "+1 555 987 6543"}
    app.send_task("leadsync.sync_lead", args=[lead])
    app.close()
    client = redis.Redis.from_url(redis_url)
    (raw,) = queue_entries(client)
    headers = json.loads(raw)["headers"]
    assert "through.celery" not in headers["argsrepr"]
    assert "987 6543" not in headers["argsrepr"]
    assert parse_lead(lead).lead_id in headers["argsrepr"]
    client.close()


# --- leadsync enqueue -------------------------------------------------------------------------

CSV_TEXT = (
    "Email,First_Name,last_name,phone,company,job_title,street,city,state,postal_code,country,"
    "consent,source,lead_id,list_ids,cf:Lead Score,custom.color\n"
    f"Ann@Example.com,Ann,Lee,+1 555 000 1111,Acme,CTO,1 Main St,Boston,MA,02110,US,yes,web,,"
    f'"{LIST_A}; {LIST_B}",42,blue\n'
    "not-an-email,Bob,,,,,,,,,,no,,,,,\n"
    'c@example.com,"Multi\nLine",,,,,,,,,,maybe,,,,,\n'
    "d@example.com,Dee,,,,,,,,,,,,crm-7,,,\n"
)


@pytest.fixture
def env_redis(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> redis.Redis:
    monkeypatch.setenv("LEADSYNC_REDIS_URL", redis_url)
    return redis.Redis.from_url(redis_url)


def test_enqueue_csv_maps_columns_and_reports_lines(
    tmp_path: Path, env_redis: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "leads.csv"
    path.write_text(CSV_TEXT, encoding="utf-8")

    code = main(["enqueue", str(path)])

    out = capsys.readouterr().out
    assert code == ExitCode.INVALID_INPUT
    assert "enqueued 2 lead(s)" in out and "rejected 2" in out
    assert "line 3: email: not a valid email address" in out
    assert "line 4: consent: not a yes/no value" in out  # the quoted cell spans lines 4-5
    assert "not-an-email" not in out
    ann, dee = _queued(env_redis)
    assert (ann.email, ann.first_name, ann.last_name, ann.company, ann.job_title) == (
        "ann@example.com", "Ann", "Lee", "Acme", "CTO")  # fmt: skip
    assert ann.address is not None and (ann.address.city, ann.address.postal_code) == (
        "Boston", "02110")  # fmt: skip
    assert ann.list_ids == [LIST_A, LIST_B] and ann.consent is True and ann.source == "web"
    assert ann.custom_fields == {"Lead Score": "42", "color": "blue"}
    assert dee.lead_id == "crm-7" and dee.consent is False


def test_enqueue_jsonl_reports_line_numbers(
    tmp_path: Path, env_redis: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "leads.jsonl"
    lines = [
        json.dumps({"email": "one@example.com"}),
        "",
        "{broken",
        json.dumps({"email": "two@example.com", "phone": "+44 20 7946 0000 ext 12345678"}),
        json.dumps({"first_name": "No Email"}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    assert main(["enqueue", str(path)]) == ExitCode.INVALID_INPUT
    out = capsys.readouterr().out
    assert "enqueued 2 lead(s)" in out and "rejected 2" in out
    assert "1 with fields cut" in out  # the long phone number
    assert "line 3: not valid JSON" in out and "line 5: email: required" in out
    assert [lead.email for lead in _queued(env_redis)] == ["one@example.com", "two@example.com"]


def test_enqueue_reads_stdin(
    env_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = b"email,first_name\nx@example.com,X\ny@example.com,Y\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))

    assert main(["enqueue", "-"]) == ExitCode.OK
    assert "enqueued 2 lead(s)" in capsys.readouterr().out
    assert [lead.first_name for lead in _queued(env_redis)] == ["X", "Y"]


def test_unknown_csv_column_stops_before_enqueuing(
    tmp_path: Path, env_redis: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "leads.csv"
    path.write_text("email,favourite_food\na@example.com,pie\n", encoding="utf-8")
    assert main(["enqueue", str(path)]) == ExitCode.INVALID_INPUT
    captured = capsys.readouterr()
    assert "unknown column 'favourite_food'" in captured.err
    assert queued(env_redis, "leads") == 0


def test_redis_down_exit_code_and_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEADSYNC_REDIS_URL", f"redis://:pw-secret@127.0.0.1:{free_port()}/0")
    path = tmp_path / "leads.jsonl"
    path.write_text(json.dumps({"email": "a@example.com"}) + "\n", encoding="utf-8")

    assert main(["enqueue", str(path)]) == ExitCode.REDIS_UNAVAILABLE
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing half-reported
    assert captured.err.count("\n") == 1 and "Redis unavailable at 127.0.0.1" in captured.err
    assert "pw-secret" not in captured.err


def test_progress_bar_on_a_terminal(tmp_path: Path, redis_url: str) -> None:
    path = tmp_path / "leads.jsonl"
    path.write_text(
        "".join(json.dumps({"email": f"p{i}@example.com"}) + "\n" for i in range(2500)),
        encoding="utf-8",
    )
    leader, follower = pty.openpty()
    env = {**os.environ, "LEADSYNC_REDIS_URL": redis_url}
    proc = subprocess.run(
        [sys.executable, "-m", "worker", "enqueue", str(path), "--batch-size", "1000"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=follower, timeout=60, check=False,
    )  # fmt: skip
    os.close(follower)
    shown = os.read(leader, 65536).decode()
    os.close(leader)
    assert proc.returncode == 0, shown
    assert "\r[" in shown and "100%" in shown and "2,500 enqueued" in shown
    assert b"enqueued 2,500 lead(s)" in proc.stdout


def test_no_progress_bar_when_stderr_is_not_a_terminal(tmp_path: Path, redis_url: str) -> None:
    path = tmp_path / "leads.jsonl"
    path.write_text(json.dumps({"email": "q@example.com"}) + "\n", encoding="utf-8")
    env = {**os.environ, "LEADSYNC_REDIS_URL": redis_url}
    proc = subprocess.run(
        [sys.executable, "-m", "worker", "enqueue", str(path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith("enqueued 1 lead(s)")

