"""`leadsync enqueue` and text encodings: a file that is not UTF-8 is refused whole, naming the
line (exit 10), or read as what `--encoding` says; a UTF-8 BOM is fine (issue 11)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.fixtures.leads import queue_entries
from tests.fixtures.ops import Spawned, leadsync_bin, wait_for
from worker.base.priority import queued
from worker.cli import main
from worker.cli.exit_codes import ExitCode
from worker.leads.wire import parse_message

pytestmark = pytest.mark.redis

LATIN1_CSV = "email,first_name,last_name\nann@example.com,Ann,Lee\njurgen@example.com,Jürgen,Groß\n"


@pytest.fixture
def env_redis(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> redis.Redis:
    monkeypatch.setenv("LEADSYNC_REDIS_URL", redis_url)
    return redis.Redis.from_url(redis_url)


def _queued(client: redis.Redis) -> list[Any]:
    return [parse_message(raw) for raw in queue_entries(client)]


def test_latin1_csv_is_refused_whole_naming_the_line(
    tmp_path: Path, env_redis: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(LATIN1_CSV.encode("latin-1"))

    assert main(["enqueue", str(path)]) == ExitCode.INVALID_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "line 3: not valid utf-8 (byte 0xfc at column 21)" in err
    assert "--encoding" in err and "nothing was enqueued" in err
    assert queued(env_redis, "leads") == 0  # line 2 was fine, but the file is refused whole


def test_encoding_option_reads_latin1(
    tmp_path: Path, env_redis: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(LATIN1_CSV.encode("latin-1"))

    assert main(["enqueue", str(path), "--encoding", "latin-1"]) == ExitCode.OK
    assert "enqueued 2 lead(s)" in capsys.readouterr().out
    _ann, jurgen = _queued(env_redis)
    assert (jurgen.first_name, jurgen.last_name) == ("Jürgen", "Groß")


def test_utf8_bom_is_accepted(tmp_path: Path, env_redis: redis.Redis) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(LATIN1_CSV.encode("utf-8-sig"))  # Excel's "CSV UTF-8"

    assert main(["enqueue", str(path)]) == ExitCode.OK
    assert [lead.first_name for lead in _queued(env_redis)] == ["Ann", "Jürgen"]


def test_jsonl_not_utf8_names_the_line(
    tmp_path: Path, env_redis: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "leads.jsonl"
    rows = [{"email": "a@example.com"}, {"email": "b@example.com", "first_name": "Zoë"}]
    path.write_bytes(b"".join(json.dumps(r, ensure_ascii=False).encode("cp1252") + b"\n"
                              for r in rows))

    assert main(["enqueue", str(path)]) == ExitCode.INVALID_INPUT
    assert "line 2: not valid utf-8" in capsys.readouterr().err
    assert queued(env_redis, "leads") == 0
    assert main(["enqueue", str(path), "--encoding", "cp1252"]) == ExitCode.OK
    assert _queued(env_redis)[1].first_name == "Zoë"


@pytest.mark.parametrize(("name", "message"), [
    ("no-such-codec", "unknown encoding 'no-such-codec'"),
    ("utf-16", "not ASCII-compatible"),
])
def test_unusable_encodings_are_one_clear_line(
    name: str, message: str, tmp_path: Path, env_redis: redis.Redis,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "leads.csv"
    path.write_text("email\na@example.com\n", encoding="utf-8")
    assert main(["enqueue", str(path), "--encoding", name]) == ExitCode.INVALID_INPUT
    assert message in capsys.readouterr().err
    assert queued(env_redis, "leads") == 0


def test_piped_stdin_is_checked_before_anything_is_queued(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """A real pipe cannot be read twice: the command spools it, then checks, then queues."""
    env = {**os.environ, "LEADSYNC_REDIS_URL": redis_url}
    data = LATIN1_CSV.encode("latin-1")
    refused = subprocess.run([leadsync_bin("leadsync"), "enqueue", "-", "--format", "csv"],
                             input=data, env=env, capture_output=True, timeout=60)
    assert refused.returncode == ExitCode.INVALID_INPUT
    assert b"line 3: not valid utf-8" in refused.stderr
    assert queued(redis_client, "leads") == 0
    accepted = subprocess.run([leadsync_bin("leadsync"), "enqueue", "-", "--encoding",
                               "latin-1"], input=data, env=env, capture_output=True, timeout=60)
    assert accepted.returncode == ExitCode.OK, accepted.stderr
    assert [lead.first_name for lead in _queued(redis_client)] == ["Ann", "Jürgen"]


def test_latin1_file_reaches_the_contact_through_a_real_worker(
    ops_stack: tuple[Any, dict[str, str]], spawned: Spawned, tmp_path: Path,
) -> None:
    sandbox, env = ops_stack
    path = tmp_path / "export.csv"
    path.write_bytes(LATIN1_CSV.encode("latin-1"))
    enqueue = [leadsync_bin("leadsync"), "enqueue", str(path), "--encoding", "latin-1"]
    assert subprocess.run(enqueue, env=env, capture_output=True, timeout=60).returncode == 0
    spawned.start("worker", ["celery", "-A", "worker", "worker", "--concurrency=1",
                             "--hostname=encoding@%h", "--without-mingle", "--without-gossip"],
                  env)

    def contact() -> dict[str, Any] | None:
        found = [c for c in sandbox.contacts()
                 if c["email_address"]["address"] == "jurgen@example.com"]
        return found[0] if found else None

    delivered = wait_for(contact, 60, "the Latin-1 lead in the sandbox")
    assert (delivered["first_name"], delivered["last_name"]) == ("Jürgen", "Groß")
