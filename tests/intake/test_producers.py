"""The producers in docs/producers, compiled and run against a real intake process:
the Java 17 class (javac, java.net.http only) and the Node fetch example; and, with a real
worker and the sandbox, a Java lead and a post from the sample HTML form become contacts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from tests.fixtures.ops import REPO
from tests.intake.conftest import Client, intake_env, settings_of, start_intake_process
from tests.intake.formpage import submission
from tests.intake.test_api import queued
from worker.base.scope import Scope
from worker.intake.apikeys import ApiKeys
from worker.leads.lead import parse_lead

PRODUCERS = REPO / "docs" / "producers"
pytestmark = pytest.mark.redis


def compile_java(out: Path) -> Path:
    javac = shutil.which("javac")
    assert javac, "javac is required (the CI machine has it)"
    subprocess.run([javac, "-Xlint:all", "-Werror", "-d", str(out),
                    str(PRODUCERS / "LeadsyncIntakeClient.java")], check=True, timeout=120)
    return out


def run_java(classes: Path, base: str, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    java = shutil.which("java")
    assert java
    return subprocess.run([java, "-cp", str(classes), "LeadsyncIntakeClient", *args],
                          env={"PATH": "/usr/bin:/bin", "LEADSYNC_INTAKE_URL": base,
                               "LEADSYNC_INTAKE_KEY": key},
                          capture_output=True, text=True, timeout=120)


def test_java_client_compiles_and_posts_a_lead_that_is_queued_as_sent(
        intake_process: Any, redis_client: redis.Redis, tmp_path: Path) -> None:
    intake: Client = intake_process()
    classes = compile_java(tmp_path)
    done = run_java(classes, intake.base, intake.key, "java.lead@example.com", "Jay", "Vee")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("202 ")
    (lead,) = queued(redis_client)
    assert (lead["email"], lead["first_name"], lead["last_name"]) == (
        "java.lead@example.com", "Jay", "Vee")
    assert (lead["consent"], lead["source"]) == (True, "java")
    refused = run_java(classes, intake.base, intake.key, "not-an-email")
    assert refused.returncode == 1 and refused.stdout.startswith("422 ")
    assert run_java(classes, intake.base, "lsk_wrong", "a@example.com").returncode != 0


def test_node_example_posts_a_lead_with_fetch(
        intake_process: Any, redis_client: redis.Redis) -> None:
    node = shutil.which("node")
    assert node, "node is required (the CI machine has it)"
    intake: Client = intake_process()
    done = subprocess.run([node, str(PRODUCERS / "intake.mjs"), "node.lead@example.com", "Noa"],
                          env={"PATH": "/usr/bin:/bin", "LEADSYNC_INTAKE_URL": intake.base,
                               "LEADSYNC_INTAKE_KEY": intake.key},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("202 ")
    (lead,) = queued(redis_client)
    assert (lead["email"], lead["first_name"], lead["source"]) == (
        "node.lead@example.com", "Noa", "node")


@pytest.mark.slow
def test_a_java_lead_and_a_sample_form_post_become_contacts(
        fleet: Any, spawned: Any, redis_client: redis.Redis, tmp_path: Path) -> None:
    team = fleet()
    env = {**team.stack.env, **intake_env(team.stack.env["LEADSYNC_REDIS_URL"])}
    keys = ApiKeys(Scope(settings_of(env), redis_client))
    key, form_key = keys.create("java"), keys.create("website", "form")
    base, _ = start_intake_process(spawned, env)
    team.start_worker("w1", concurrency=2)

    done = run_java(compile_java(tmp_path), base, key, "grace.java@example.com", "Grace")
    assert done.returncode == 0, done.stderr
    path, fields = submission({"email": "form.person@example.com", "first_name": "Fern"},
                              form_key)
    posted = requests.post(base + path, data=fields, allow_redirects=False, timeout=30)
    assert posted.status_code == 303
    assert posted.headers["location"] == "https://example.com/thanks"

    lead_ids = [parse_lead({"email": "grace.java@example.com", "first_name": "Grace",
                            "consent": True, "source": "java"}).lead_id,
                parse_lead({"email": "form.person@example.com", "first_name": "Fern",
                            "consent": True, "source": "website"}).lead_id]
    team.wait_settled(lead_ids, 120)
    contacts = {c["email_address"]["address"]: c for c in team.stack.sandbox.contacts()}
    assert contacts["grace.java@example.com"]["first_name"] == "Grace"
    assert contacts["form.person@example.com"]["first_name"] == "Fern"
