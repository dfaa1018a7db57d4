"""The processes users run, started for real: `celery -A worker worker|beat|flower`, the
Procfile under honcho, and `leadsync demo`, against the sandbox and a private Redis."""

from __future__ import annotations

import base64
import json
import os
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from tests.fixtures.ops import (
    REPO,
    Spawned,
    leadsync_bin,
    pids_alive,
    processes_in_groups,
    wait_for,
)
from worker.account import Account
from worker.demo.embedded_redis import free_port
from worker.leads.enqueue import enqueue_leads

pytestmark = pytest.mark.redis

WORKER = ["celery", "-A", "worker", "worker", "-E", "--concurrency=2",
          "--hostname=ops-test@%h", "--without-mingle", "--without-gossip"]
PEOPLE = [
    {"email": "marie.curie@radium.example", "first_name": "Marie", "phone": "+33 1 45 67 89 01"},
    {"email": "niels.bohr@copenhagen.example", "first_name": "Niels", "phone": "+45 35 32 52 09"},
    {"email": "lise.meitner@fission.example", "first_name": "Lise", "phone": "+43 1 234 5678"},
]


def _health(env: dict[str, str], *args: str) -> int:
    import subprocess

    return subprocess.call([leadsync_bin("leadsync"), "health", *args], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)


def _delivered(sandbox: Any, count: int) -> bool:
    with urllib.request.urlopen(f"{sandbox.url}/_sandbox/stats", timeout=5) as answer:
        stats = json.loads(answer.read())
    return int(stats.get("contacts", {}).get("count", stats.get("contact_count", 0))) >= count


def test_health_passes_once_a_real_worker_answers(
    ops_env: dict[str, str], spawned: Spawned
) -> None:
    assert _health(ops_env, "--timeout", "0.5") == 9
    spawned.start("worker", WORKER, ops_env)
    wait_for(lambda: _health(ops_env, "--node", "ops-test@%h", "--timeout", "1") == 0, 60,
             "the worker to answer `leadsync health --node ops-test@%h`")


def test_flower_shows_sync_lead_with_redacted_arguments(
    ops_stack: tuple[Any, dict[str, str]], spawned: Spawned, redis_client: redis.Redis
) -> None:
    _sandbox, env = ops_stack
    port = free_port()
    flower_env = {**env, "FLOWER_BASIC_AUTH": "ops:flower-pass", "FLOWER_PORT": str(port)}
    spawned.start("flower", ["celery", "-A", "worker", "flower", "--address=127.0.0.1"],
                  flower_env)
    spawned.start("worker", WORKER, env)
    auth = "Basic " + base64.b64encode(b"ops:flower-pass").decode()

    def tasks() -> dict[str, Any]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/tasks",
                                         headers={"Authorization": auth})
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                data: dict[str, Any] = json.loads(answer.read())
                return data
        except OSError:
            return {}

    wait_for(lambda: _health(env, "--node", "ops-test@%h", "--timeout", "1") == 0, 60,
             "the worker")
    def flower_up() -> bool:
        if not _port_open(port):
            return False
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthcheck", timeout=2) as answer:
            return bool(answer.status == 200)  # closed at once: a leaked socket fails the run

    wait_for(flower_up, 60, "flower")
    report = enqueue_leads(PEOPLE[:1], redis=redis_client)
    (lead_id,) = report.lead_ids

    def finished_task() -> dict[str, Any] | None:
        for task in tasks().values():
            if task.get("name") == "leadsync.sync_lead" and task.get("state") == "SUCCESS":
                return task
        return None

    task = wait_for(finished_task, 90, "Flower to show a finished leadsync.sync_lead")
    shown = json.dumps(task)
    assert PEOPLE[0]["email"] not in shown and "45 67 89" not in shown
    assert "marie.curie" not in shown
    # Flower shows the redacted argsrepr: the lead_id and a masked email, nothing in clear.
    assert lead_id in task["args"] and "m***@r***.example" in task["args"]
    # Without credentials Flower refuses its API.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/tasks", timeout=5)
    assert refused.value.code == 401
    refused.value.close()


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_full_run_logs_one_line_per_outcome_and_no_secret_or_personal_data(
    ops_stack: tuple[Any, dict[str, str]], spawned: Spawned, redis_client: redis.Redis,
) -> None:
    """Worker + beat + sandbox, valid and invalid leads, at least one refresh: the logs name
    every lead's outcome and contain none of the values a leak would show."""
    from worker.base.settings import load_settings

    _sandbox, env = ops_stack
    env = {**env, "LEADSYNC_LOG_FORMAT": "json"}
    settings = load_settings(_env_file=None, redis_url=env["LEADSYNC_REDIS_URL"])
    tokens = Account(settings, redis_client).tokens
    first = tokens.read()
    assert first is not None
    secrets = [first.access_token, first.refresh_token, env["LEADSYNC_CLIENT_SECRET"]]
    spawned.start("worker", WORKER, env)
    spawned.start("beat", ["celery", "-A", "worker", "beat", "--schedule=beat-schedule"], env)
    invalid_list = {"email": "no.list@nowhere.example", "phone": "+1 202 555 0199",
                    "list_ids": ["00000000-0000-4000-8000-00000000dead"]}
    report = enqueue_leads([*PEOPLE, invalid_list, {"email": "broken"}], redis=redis_client)
    assert report.enqueued == 4 and report.rejected_count == 1

    def refreshed_and_done() -> bool:
        # A final line per lead: a `retrying` line (a 401 while the short-lived token is being
        # refreshed, more likely on a busy machine) is not the end of that lead's story.
        record = tokens.read()
        final = [line for line in _json_lines(spawned) if line.get("lead_id")
                 and line.get("status") in ("delivered", "dead_lettered")]
        return bool(record and record.refresh_count >= 1
                    and {o["lead_id"] for o in final} >= set(report.lead_ids))

    wait_for(refreshed_and_done, 120, "every lead's final outcome line and one token refresh")
    latest = tokens.read()
    assert latest is not None
    secrets += [latest.access_token, latest.refresh_token]
    text = spawned.log("worker") + spawned.log("beat")
    for value in secrets + [p["email"] for p in PEOPLE] + [invalid_list["email"]]:
        assert value not in text, "a secret or an email reached the logs"
    for phone in [p["phone"] for p in PEOPLE] + [invalid_list["phone"]]:
        digits = re.sub(r"\D", "", phone)
        assert phone not in text and digits not in re.sub(r"[ -]", "", text)
    outcomes = [o for o in _json_lines(spawned) if o.get("lead_id") and o.get("status")]
    per_lead = {lead_id: [o for o in outcomes if o["lead_id"] == lead_id]
                for lead_id in report.lead_ids}
    for lead_id, lines in per_lead.items():
        final = [o for o in lines if o["status"] in ("delivered", "dead_lettered")]
        assert len(final) == 1, f"{lead_id}: {lines}"
        assert {"attempt", "latency_ms"} <= set(final[0]) or {"attempt", "latency_s"} <= set(
            final[0]), final[0]


def _json_lines(spawned: Spawned) -> list[dict[str, Any]]:
    out = []
    for line in spawned.log("worker").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


@pytest.mark.slow
def test_honcho_runs_the_procfile_and_delivers_to_the_sandbox(
    ops_stack: tuple[Any, dict[str, str]], spawned: Spawned, redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    sandbox, env = ops_stack
    # The Procfile names bare `celery`, as an activated virtual environment provides it.
    bin_dir = str(Path(leadsync_bin("celery")).parent)
    intake_port = free_port()  # the Procfile's intake binds LEADSYNC_INTAKE_PORT
    env = {**env, "FLOWER_PORT": str(free_port()), "FLOWER_UNAUTHENTICATED_API": "true",
           "LEADSYNC_INTAKE_PORT": str(intake_port),
           "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"}
    procfile = tmp_path / "Procfile"
    procfile.write_text((REPO / "Procfile").read_text())
    honcho = spawned.start("honcho", ["honcho", "start", "-f", str(procfile), "-d", str(tmp_path)],
                           env)
    report = enqueue_leads(PEOPLE, redis=redis_client)
    wait_for(lambda: _delivered(sandbox, len(report.lead_ids)), 120,
             "the Procfile's worker to deliver every lead to the sandbox")
    log = spawned.log("honcho")
    for name in ("worker.1", "beat.1", "flower.1", "intake.1"):
        assert name in log, f"honcho did not start {name}"

    def intake_ready() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{intake_port}/readyz", timeout=5).ok
        except requests.ConnectionError:
            return False

    wait_for(intake_ready, 60, "the Procfile's intake to answer /readyz")
    assert honcho.poll() is None


@pytest.mark.slow
def test_demo_delivers_every_valid_lead_and_leaves_nothing_running(tmp_path: Path) -> None:
    import subprocess

    summary_path = tmp_path / "summary.json"
    started = time.monotonic()
    result = subprocess.run(
        [leadsync_bin("leadsync"), "demo", "--leads", "40", "--summary-json", str(summary_path)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(summary_path.read_text())
    expected = summary["expected"]
    assert summary["enqueued"] == 40 - summary["rejected_at_enqueue"]
    assert summary["processed"] == summary["enqueued"]
    assert summary["refreshes"] >= 1
    leads = summary["leads"]
    assert leads.get("delivered", expected["distinct_valid"]) == expected["distinct_valid"]
    assert "summary" in result.stdout and "token refreshes" in result.stdout
    # Its throw-away Redis has no persistence, and the demo says it opted out of the check.
    assert "LEADSYNC_ALLOW_VOLATILE_REDIS=true" in result.stdout
    groups = [int(g) for g in re.findall(r"process group (\d+)", result.stdout)]
    pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", result.stdout)]
    assert len(groups) >= 2
    assert not pids_alive(pids + groups)
    assert not processes_in_groups(groups)
    print(f"\nDEMO 40 leads in {elapsed:.1f} s")  # bounded by the 300 s timeout above
