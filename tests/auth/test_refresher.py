"""The single locked refresh path on real Redis against the sandbox's authorization server:
one refresh per generation however many callers, long-lived vs rotating, the 1 request/s token
endpoint, invalid_grant after a re-read, transient failures with backoff, crash recovery with
and without a grace window, and the client's error mapping."""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from tests.fixtures.sandbox import CC
from tests.fixtures.tokens import HOUR_S, WebhookSink, authorize, sandbox_settings
from worker.account import Account
from worker.auth import token_store
from worker.auth.access import current_access_token, sending_possible, token_state
from worker.auth.oauth_client import OAuthClient, TokenResponse
from worker.auth.refresher import backoff_s, refresh
from worker.auth.token_record import TokenRecord
from worker.auth.token_store import TokenStore
from worker.base.errors import OAuthServerError, OAuthTransientError, TokenVerificationError
from worker.base.settings import Settings
from worker.sandbox import SandboxServer

pytestmark = pytest.mark.redis
DUE = 3500.0  # 100 s left of a 1-hour token: under the 25 % margin, so the beat refreshes


def _due() -> float:
    return time.time() + DUE


def _record(settings: Settings, r: redis.Redis) -> TokenRecord:
    record = Account(settings, r).tokens.read()
    assert record is not None
    return record


def _api_accepts(server: SandboxServer, token: str) -> bool:
    return CC(server).call("GET", "/contact_lists", token=token).status_code == 200


def test_fresh_token_is_not_refreshed_and_due_one_is(auth_settings: Settings,
                                                     redis_client: redis.Redis,
                                                     auth_sandbox: SandboxServer) -> None:
    tokens = Account(auth_settings, redis_client).tokens
    first = authorize(auth_settings, redis_client, auth_sandbox)
    calls = auth_sandbox.stats()["token_requests"]
    assert refresh(tokens).action == "not_needed"
    assert auth_sandbox.stats()["token_requests"] == calls
    outcome = refresh(tokens, clock=_due)
    assert (outcome.action, outcome.generation) == ("refreshed", 2)
    stored = current_access_token(tokens).value
    assert stored != first.access_token and _api_accepts(auth_sandbox, stored)
    assert auth_sandbox.stats()["refresh_token_generation"] == 2  # the server agrees
    assert _record(auth_settings, redis_client).refresh_token_mode == "rotating"


def test_many_callers_one_refresh_per_generation(auth_settings: Settings,
                                                 redis_client: redis.Redis,
                                                 auth_sandbox: SandboxServer) -> None:
    authorize(auth_settings, redis_client, auth_sandbox)
    results: list[str] = []

    def worker() -> None:  # eight workers got a 401 on generation 1 at the same moment
        client = redis.Redis.from_url(auth_settings.redis_url)
        results.append(refresh(Account(auth_settings, client).tokens, seen_generation=1).action)
        client.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == ["already_refreshed"] * 7 + ["refreshed"]
    seen = auth_sandbox.stats()
    assert seen["refreshes"] == 1 and seen["invalid_grant"] == 0
    assert Account(auth_settings, redis_client).tokens.generation() == 2


class _AnswerWithoutRefreshToken(OAuthClient):
    """RFC 6749 section 6 lets a server leave refresh_token out of a refresh answer; the
    sandbox (like Constant Contact) always repeats it, so the field is dropped here."""

    def refresh(self, refresh_token: str) -> TokenResponse:
        return dataclasses.replace(super().refresh(refresh_token), refresh_token=None)


@pytest.mark.parametrize("omitted", [False, True], ids=["same-value", "omitted"])
def test_long_lived_refresh_token_is_kept(make_sandbox: Callable[..., SandboxServer],
                                          make_settings: Any, redis_url: str,
                                          redis_client: redis.Redis, omitted: bool) -> None:
    server = make_sandbox(refresh_tokens="long-lived", token_rate_limit_per_s=0)
    settings = sandbox_settings(make_settings, server, redis_url=redis_url)
    original = authorize(settings, redis_client, server).refresh_token
    client = _AnswerWithoutRefreshToken(settings) if omitted else None
    for expected_generation in (2, 3):
        outcome = refresh(Account(settings, redis_client).tokens, force=True, client=client)
        assert (outcome.action, outcome.generation) == ("refreshed", expected_generation)
    record = _record(settings, redis_client)
    assert record.refresh_token == original and record.refresh_token_mode == "long_lived"
    assert server.stats()["refreshes"] == 2 and server.stats()["invalid_grant"] == 0


def test_token_requests_are_spaced_and_a_throttled_one_is_retried(
        auth_settings: Settings, redis_client: redis.Redis, auth_sandbox: SandboxServer) -> None:
    """The fleet-wide gate lets one token request a second through. On a loaded machine a
    request can still reach the server less than a second after the previous one (they left
    the gate a second apart but travelled at different speeds): the server then answers 429,
    which must cost no refresh token and be followed by a retry, and the state must come back
    to ok. Invariants only: how often the 429 happens depends on the machine's load."""
    account = Account(auth_settings, redis_client)
    authorize(auth_settings, redis_client, auth_sandbox)
    auth_sandbox.set_faults(token_rate_limit_per_s=1)  # Constant Contact's limit, from now on
    started = time.monotonic()
    outcomes: list[str] = []
    while outcomes.count("refreshed") < 3:
        assert len(outcomes) < 9, f"no progress through the token endpoint: {outcomes}"
        outcome = refresh(account.tokens, force=True)
        assert outcome.action in ("refreshed", "failing"), outcome
        if outcome.action == "failing":  # only a throttled request may fail here
            assert outcome.detail.startswith("too_many_requests"), outcome
        outcomes.append(outcome.action)
    # Three requests through a 1/s gate span two seconds at least, however fast the machine.
    assert time.monotonic() - started >= 1.9
    seen = auth_sandbox.stats()
    # Every 429 the server sent is one `failing` outcome that was retried, and spent nothing:
    # three refresh tokens were used, none twice, and the generation moved three times.
    assert seen["token_throttled"] == outcomes.count("failing")
    assert seen["refreshes"] == 3 and seen["invalid_grant"] == 0
    assert account.tokens.generation() == 4
    assert token_state(account.tokens) == "ok"
    record = _record(auth_settings, redis_client)
    assert record.failure_count == 0 and record.next_attempt_at <= time.time()


def test_invalid_grant_after_reread_needs_a_person_and_alerts_once(
        make_settings: Any, redis_url: str, redis_client: redis.Redis,
        auth_sandbox: SandboxServer, webhook_server: WebhookSink,
        caplog: pytest.LogCaptureFixture) -> None:
    settings = sandbox_settings(make_settings, auth_sandbox, redis_url=redis_url,
                                alert_webhook_url=webhook_server.url)
    authorize(settings, redis_client, auth_sandbox)
    auth_sandbox.revoke_refresh_tokens()
    outcome = refresh(Account(settings, redis_client).tokens, force=True)
    assert outcome.action == "reauth_required"
    assert token_state(Account(settings, redis_client).tokens) == "reauth_required"
    assert sending_possible(Account(settings, redis_client).tokens) is False
    # no retry:
    assert refresh(Account(settings, redis_client).tokens, force=True).action == "reauth_required"
    assert auth_sandbox.stats()["invalid_grant"] == 1
    assert len(webhook_server.posts) == 1
    assert webhook_server.posts[0]["event"] == "leadsync.token.reauth_required"
    assert [r for r in caplog.records if r.levelname == "ERROR"]
    # Re-authorizing resets the state and the incident: the next one alerts again.
    authorize(settings, redis_client, auth_sandbox)
    assert token_state(Account(settings, redis_client).tokens) == "ok"
    auth_sandbox.revoke_refresh_tokens()
    assert refresh(Account(settings, redis_client).tokens, force=True).action == "reauth_required"
    assert len(webhook_server.posts) == 2


def test_transient_failures_back_off_then_recover(auth_settings: Settings,
                                                  redis_client: redis.Redis,
                                                  auth_sandbox: SandboxServer) -> None:
    tokens = Account(auth_settings, redis_client).tokens
    authorize(auth_settings, redis_client, auth_sandbox)
    auth_sandbox.set_faults(fail_rate=1.0)  # every call answers 500 or 503
    later = _due()
    first = refresh(tokens, clock=lambda: later)
    assert first.action == "failing"
    assert token_state(tokens) == "refresh_failing"
    assert sending_possible(tokens) is True  # old token still valid
    assert refresh(tokens, clock=lambda: later).action == "backing_off"
    second = refresh(tokens, clock=lambda: later + backoff_s(1) + 0.1)
    assert second.action == "failing"
    auth_sandbox.set_faults(fail_rate=0.0)
    third = refresh(tokens, clock=lambda: later + 10)
    assert third.action == "refreshed"
    assert token_state(tokens) == "ok"
    assert sum(auth_sandbox.stats()["faults_injected"].values()) == 2
    assert [backoff_s(n) for n in (1, 2, 3, 20)] == [1, 2, 4, 300]
    assert backoff_s(1, retry_after_s=30) == 30


def _crash_after_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process dies after the token answer arrived, before the new pair is written."""

    def crash(self: TokenStore, expected: int, record: Any) -> int:
        raise SystemExit("killed between the token answer and the store write")

    monkeypatch.setattr(token_store.TokenStore, "replace", crash)


def _crash_once(settings: Settings, r: redis.Redis) -> None:
    with pytest.MonkeyPatch.context() as patch:
        _crash_after_answer(patch)
        with pytest.raises(SystemExit):
            refresh(Account(settings, r).tokens, force=True)


def test_crash_between_answer_and_write_with_grace_window_recovers(
        make_sandbox: Callable[..., SandboxServer], make_settings: Any, redis_url: str,
        redis_client: redis.Redis) -> None:
    server = make_sandbox(access_token_lifetime_s=HOUR_S, refresh_grace_s=60,
                          token_rate_limit_per_s=0)
    settings = sandbox_settings(make_settings, server, redis_url=redis_url)
    tokens = Account(settings, redis_client).tokens
    authorize(settings, redis_client, server)
    _crash_once(settings, redis_client)
    assert server.stats()["refreshes"] == 1  # the server rotated; we never stored the answer
    outcome = refresh(tokens, clock=_due)  # the next beat
    assert outcome.action == "refreshed"
    assert token_state(tokens) == "ok"
    assert server.stats()["invalid_grant"] == 0
    assert _api_accepts(server, current_access_token(tokens).value)


def test_crash_between_answer_and_write_without_grace_needs_reauth(
        auth_settings: Settings, redis_client: redis.Redis,
        auth_sandbox: SandboxServer) -> None:
    tokens = Account(auth_settings, redis_client).tokens
    authorize(auth_settings, redis_client, auth_sandbox)
    _crash_once(auth_settings, redis_client)
    outcome = refresh(tokens, clock=_due)
    assert outcome.action == "reauth_required"
    assert re.fullmatch(r"refresh interrupted at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, the new "
                        r"token was lost \(.*", outcome.detail)
    assert token_state(tokens) == "reauth_required"
    assert auth_sandbox.stats()["invalid_grant"] == 1


def test_token_failing_verification_is_never_stored(auth_settings: Settings,
                                                    redis_client: redis.Redis,
                                                    auth_sandbox: SandboxServer) -> None:
    authorize(auth_settings, redis_client, auth_sandbox)
    before = current_access_token(Account(auth_settings, redis_client).tokens)
    # The sandbox's tokens carry aud=https://api.cc.email/v3; this worker expects another.
    elsewhere = auth_settings.model_copy(update={"token_audience": "https://elsewhere.invalid"})
    outcome = refresh(Account(elsewhere, redis_client).tokens, force=True)
    assert outcome.action == "reauth_required" and "failed verification" in outcome.detail
    record = _record(auth_settings, redis_client)
    assert record.access_token == before.value and record.generation == before.generation
    with pytest.raises(TokenVerificationError):  # and a first authorization is refused too
        authorize(elsewhere, redis_client, auth_sandbox)
    assert _record(auth_settings, redis_client).generation == before.generation


def test_missing_refresh_token_on_first_authorization_names_offline_access(
        auth_settings: Settings, redis_client: redis.Redis,
        auth_sandbox: SandboxServer) -> None:
    with pytest.raises(OAuthServerError, match="offline_access"):
        authorize(auth_settings, redis_client, auth_sandbox, scope="contact_data")
    assert token_state(Account(auth_settings, redis_client).tokens) == "not_authorized"


def test_client_errors_are_translated(auth_settings: Settings,
                                      auth_sandbox: SandboxServer) -> None:
    client = OAuthClient(auth_settings)
    auth_sandbox.set_faults(fail_rate=1.0)
    with pytest.raises(OAuthTransientError) as server_error:
        client.refresh("whatever")
    status = server_error.value.status_code
    assert status in (500, 503)
    assert auth_sandbox.stats()["faults_injected"] == {str(status): 1}
    auth_sandbox.set_faults(fail_rate=0.0, token_rate_limit_per_s=1)
    with pytest.raises(OAuthServerError) as grant:
        client.refresh("not-a-token")
    assert grant.value.error == "invalid_grant"
    assert not isinstance(grant.value, OAuthTransientError)
    with pytest.raises(OAuthTransientError) as throttled:  # a second call in the same second
        client.refresh("not-a-token")
    assert throttled.value.status_code == 429
    assert auth_sandbox.stats()["token_throttled"] == 1
    dead = auth_settings.model_copy(update={"token_url": "http://127.0.0.1:9/token"})
    with pytest.raises(OAuthTransientError) as refused:
        OAuthClient(dead).refresh("x")
    assert refused.value.error == "connection_error"
