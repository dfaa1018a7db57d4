"""The intake as a real process: keys from the CLI, 503 while Redis is down, clean logs."""

from __future__ import annotations

from typing import Any

import pytest
import redis
import requests

from tests.fixtures.ops import wait_for
from tests.intake.conftest import intake_env, start_intake_process
from worker.base.names import LEADS_QUEUE
from worker.base.priority import queued
from worker.base.scope import Scope
from worker.cli import main
from worker.demo.embedded_redis import EmbeddedRedis


def test_keys_create_list_revoke_from_the_cli(
        redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEADSYNC_REDIS_URL", redis_url)
    assert main(["intake", "keys", "create", "crm"]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("lsk_") and len(key) > 40
    assert main(["intake", "keys", "create", "crm"]) == 10  # exists: revoke first
    assert main(["intake", "keys", "create", "Bad Name"]) == 10
    capsys.readouterr()
    assert main(["intake", "keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert "crm" in listing and "active" in listing and key not in listing
    assert main(["intake", "keys", "revoke", "crm"]) == 0
    assert main(["intake", "keys", "revoke", "nobody"]) == 10
    capsys.readouterr()
    main(["intake", "keys", "list"])
    assert "revoked" in capsys.readouterr().out
    monkeypatch.setenv("LEADSYNC_REDIS_URL", "redis://127.0.0.1:1/0")
    from worker.base.settings import get_settings

    get_settings.cache_clear()
    assert main(["intake", "keys", "list"]) == 4


def test_a_bad_webhook_secret_setting_stops_start_up_with_exit_3(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from worker.base.settings import get_settings

    monkeypatch.setenv("LEADSYNC_INTAKE_WEBHOOK_SECRETS", "billing=tooshort")
    get_settings.cache_clear()
    assert main(["intake", "--port", "1"]) == 3
    error = capsys.readouterr().err
    assert "LEADSYNC_INTAKE_WEBHOOK_SECRETS" in error and "tooshort" not in error


def test_redis_down_answers_503_with_retry_after_then_recovers(
        spawned: Any, tmp_path: Any) -> None:
    from tests.intake.conftest import settings_of
    from worker.intake.apikeys import ApiKeys

    with EmbeddedRedis() as own:
        env = intake_env(own.url)
        client = redis.Redis.from_url(own.url)
        key = ApiKeys(Scope(settings_of(env), client)).create("crm")
        base, _ = start_intake_process(spawned, env)
        session = requests.Session()
        auth = {"Authorization": f"Bearer {key}"}
        assert session.post(base + "/v1/leads", json={"email": "a@example.com"},
                            headers=auth, timeout=10).status_code == 202
        port = own.port
        own.stop()
        down = session.post(base + "/v1/leads", json={"email": "b@example.com"},
                            headers=auth, timeout=30)
        assert down.status_code == 503 and int(down.headers["Retry-After"]) > 0
        assert session.get(base + "/readyz", timeout=30).status_code == 503
        assert session.get(base + "/healthz", timeout=10).status_code == 200
        again = EmbeddedRedis(port=port).start()
        try:
            wait_for(lambda: session.get(base + "/readyz", timeout=10).status_code == 200, 30,
                     "readiness after Redis came back")
            key = ApiKeys(Scope(settings_of(env), client)).create("crm")  # the new server is empty
            back = session.post(base + "/v1/leads", json={"email": "c@example.com"},
                                headers={"Authorization": f"Bearer {key}"}, timeout=30)
            assert back.status_code == 202 and queued(client, LEADS_QUEUE) == 1
        finally:
            again.stop()
        client.close()


def test_scrub_removes_intake_keys_from_any_text() -> None:
    from worker.base.redaction import scrub
    from worker.intake.apikeys import new_key

    key = new_key()
    assert key not in scrub(f"failed for {key} and key={key}")
    assert "lsk_<redacted>" in scrub(f"x {key}")


def test_no_email_phone_or_key_in_the_intake_logs(
        intake_process: Any, redis_client: redis.Redis, spawned: Any) -> None:
    intake = intake_process(LEADSYNC_LOG_LEVEL="DEBUG")
    canary_email, canary_phone = "canary.leak@example.com", "+1 650 555 0199"
    leads = [{"email": canary_email, "phone": canary_phone},
             {"email": "canary.leak@", "phone": canary_phone},
             {"email": canary_email, "phone": "no digits"}]
    answer = intake.post("/v1/leads", leads, timeout=30)
    assert answer.status_code == 422
    assert canary_email not in answer.text and canary_phone not in answer.text
    intake.post("/v1/leads", {"email": canary_email}, key="lsk_canarykey0123456789abcdef",
                timeout=30)
    intake.http.post(intake.base + "/v1/forms/site", timeout=30,
                     data={"_key": intake.form_key, "email": canary_email, "phone": canary_phone})
    assert queued(redis_client, LEADS_QUEUE) >= 1
    log = spawned.log("intake")
    assert "rejected" in log  # the log line was written (so its absence of data means something)
    for secret in (canary_email, canary_phone, "0199", intake.key, intake.form_key,
                   "lsk_canarykey"):
        assert secret not in log, secret


def test_concurrent_retries_with_one_idempotency_key_queue_once_and_answer_alike(
        intake_process: Any, redis_client: redis.Redis) -> None:
    from concurrent.futures import ThreadPoolExecutor

    intake = intake_process(LEADSYNC_INTAKE_MAX_BODY_BYTES="4096")
    batch = [{"email": f"c{n}@example.com"} for n in range(20)] + [{"email": "bad"}]

    def send(_: int) -> tuple[int, str]:
        with requests.Session() as session:
            answer = session.post(intake.base + "/v1/leads", json=batch, timeout=60,
                                  headers={"Authorization": f"Bearer {intake.key}",
                                           "Idempotency-Key": "one-key"})
            return answer.status_code, answer.text

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(send, range(24)))
    assert {status for status, _ in answers} == {422}
    assert len({text for _, text in answers}) == 1
    assert queued(redis_client, LEADS_QUEUE) == 20
    # A 413 on a kept-alive connection leaves it usable for the next request.
    with requests.Session() as session:
        auth = {"Authorization": f"Bearer {intake.key}"}
        big = session.post(intake.base + "/v1/leads", timeout=30, headers=auth,
                           json={"email": "a@example.com", "company": "x" * 8000})
        assert big.status_code == 413
        small = session.post(intake.base + "/v1/leads", json={"email": "z@example.com"},
                             headers=auth, timeout=30)
        assert small.status_code == 202
