"""The single locked refresh path on real Redis against a fake authorization server:
one refresh per generation however many callers, long-lived vs rotating, invalid_grant after a
re-read, transient failures with backoff, crash recovery with and without a grace window."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest
import redis

from tests.fixtures.tokens import FakeAuthServer, WebhookSink
from worker.auth import token_store
from worker.auth.access import current_access_token, sending_possible, token_state
from worker.auth.grant import store_authorization
from worker.auth.oauth_client import OAuthClient
from worker.auth.refresher import backoff_s, refresh
from worker.auth.token_store import TokenStore
from worker.errors import OAuthServerError, TokenVerificationError

pytestmark = pytest.mark.redis


def _authorize(settings: Any, r: redis.Redis, fake: FakeAuthServer) -> None:
    with fake.lock:
        body = fake.mint()
    from worker.auth.oauth_client import TokenResponse

    answer = TokenResponse(body["access_token"], body.get("refresh_token"), body["expires_in"],
                           body["scope"], "Bearer", time.time())
    store_authorization(settings, r, answer)


def test_fresh_token_is_not_refreshed_and_due_one_is(auth_settings: Any,
                                                     redis_client: redis.Redis,
                                                     fake_auth: FakeAuthServer) -> None:
    _authorize(auth_settings, redis_client, fake_auth)
    assert refresh(auth_settings, redis_client).action == "not_needed"
    assert fake_auth.count("token_requests") == 0
    # With 100 s left of 3600 s (under the 25 % margin) the beat refreshes.
    outcome = refresh(auth_settings, redis_client, clock=lambda: time.time() + 3500)
    assert (outcome.action, outcome.generation) == ("refreshed", 2)
    newest = fake_auth.state.issued_access[-1]
    assert current_access_token(auth_settings, redis_client).value == newest
    assert TokenStore(auth_settings, redis_client).read().refresh_token_mode == "rotating"


def test_many_callers_one_refresh_per_generation(auth_settings: Any, redis_client: redis.Redis,
                                                 fake_auth: FakeAuthServer) -> None:
    _authorize(auth_settings, redis_client, fake_auth)
    results: list[str] = []

    def worker() -> None:  # eight workers got a 401 on generation 1 at the same moment
        client = redis.Redis.from_url(auth_settings.redis_url)
        results.append(refresh(auth_settings, client, seen_generation=1).action)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == ["already_refreshed"] * 7 + ["refreshed"]
    assert fake_auth.count("refreshes") == 1 and fake_auth.count("invalid_grant") == 0
    assert TokenStore(auth_settings, redis_client).generation() == 2


def test_long_lived_answer_without_refresh_token_keeps_the_old_one(
        auth_settings: Any, redis_client: redis.Redis, fake_auth: FakeAuthServer) -> None:
    fake_auth.state.rotating = False
    fake_auth.state.omit_refresh_token = True
    _authorize(auth_settings, redis_client, fake_auth)
    original = fake_auth.state.issued_refresh[-1]
    for expected_generation in (2, 3):
        outcome = refresh(auth_settings, redis_client, force=True)
        assert (outcome.action, outcome.generation) == ("refreshed", expected_generation)
    record = TokenStore(auth_settings, redis_client).read()
    assert record.refresh_token == original and record.refresh_token_mode == "long_lived"


def test_token_requests_never_exceed_one_per_second(auth_settings: Any,
                                                    redis_client: redis.Redis,
                                                    fake_auth: FakeAuthServer) -> None:
    _authorize(auth_settings, redis_client, fake_auth)
    for _ in range(3):
        assert refresh(auth_settings, redis_client, force=True).action == "refreshed"
    times = fake_auth.state.token_times
    assert all(b - a >= 0.95 for a, b in itertools.pairwise(times))


def test_invalid_grant_after_reread_needs_a_person_and_alerts_once(
        make_settings: Any, redis_url: str, redis_client: redis.Redis,
        fake_auth: FakeAuthServer, webhook_server: WebhookSink,
        caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(redis_url=redis_url, alert_webhook_url=webhook_server.url,
                             **fake_auth.settings_kwargs())
    _authorize(settings, redis_client, fake_auth)
    fake_auth.revoke_all_refresh_tokens()
    outcome = refresh(settings, redis_client, force=True)
    assert outcome.action == "reauth_required"
    assert token_state(settings, redis_client) == "reauth_required"
    assert sending_possible(settings, redis_client) is False
    assert refresh(settings, redis_client, force=True).action == "reauth_required"  # no retry
    assert fake_auth.count("invalid_grant") == 1
    assert len(webhook_server.posts) == 1
    assert webhook_server.posts[0]["event"] == "leadsync.token.reauth_required"
    assert [r for r in caplog.records if r.levelname == "ERROR"]
    # Re-authorizing resets the state and the incident: the next one alerts again.
    _authorize(settings, redis_client, fake_auth)
    assert token_state(settings, redis_client) == "ok"
    fake_auth.revoke_all_refresh_tokens()
    assert refresh(settings, redis_client, force=True).action == "reauth_required"
    assert len(webhook_server.posts) == 2


def test_transient_failures_back_off_then_recover(auth_settings: Any, redis_client: redis.Redis,
                                                  fake_auth: FakeAuthServer) -> None:
    _authorize(auth_settings, redis_client, fake_auth)
    fake_auth.state.faults = [503, 429]
    later = time.time() + 3500  # refresh is due
    first = refresh(auth_settings, redis_client, clock=lambda: later)
    assert first.action == "failing"
    assert token_state(auth_settings, redis_client) == "refresh_failing"
    assert sending_possible(auth_settings, redis_client) is True  # old token still valid
    assert refresh(auth_settings, redis_client, clock=lambda: later).action == "backing_off"
    second = refresh(auth_settings, redis_client, clock=lambda: later + backoff_s(1) + 0.1)
    assert second.action == "failing"
    third = refresh(auth_settings, redis_client, clock=lambda: later + 10)
    assert third.action == "refreshed"
    assert token_state(auth_settings, redis_client) == "ok"
    assert [backoff_s(n) for n in (1, 2, 3, 20)] == [1, 2, 4, 300]
    assert backoff_s(1, retry_after_s=30) == 30


def _crash_after_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process dies after the token answer arrived, before the new pair is written."""

    def crash(self: TokenStore, expected: int, record: Any) -> int:
        raise SystemExit("killed between the token answer and the store write")

    monkeypatch.setattr(token_store.TokenStore, "replace", crash)


def test_crash_between_answer_and_write_with_grace_window_recovers(
        auth_settings: Any, redis_client: redis.Redis, fake_auth: FakeAuthServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake_auth.state.grace_s = 60
    _authorize(auth_settings, redis_client, fake_auth)
    with pytest.MonkeyPatch.context() as patch:
        _crash_after_answer(patch)
        with pytest.raises(SystemExit):
            refresh(auth_settings, redis_client, force=True)
    assert fake_auth.count("refreshes") == 1
    outcome = refresh(auth_settings, redis_client, clock=lambda: time.time() + 3500)  # next beat
    assert outcome.action == "refreshed"
    assert token_state(auth_settings, redis_client) == "ok"


def test_crash_between_answer_and_write_without_grace_needs_reauth(
        auth_settings: Any, redis_client: redis.Redis, fake_auth: FakeAuthServer) -> None:
    _authorize(auth_settings, redis_client, fake_auth)
    with pytest.MonkeyPatch.context() as patch:
        _crash_after_answer(patch)
        with pytest.raises(SystemExit):
            refresh(auth_settings, redis_client, force=True)
    outcome = refresh(auth_settings, redis_client, clock=lambda: time.time() + 3500)
    assert outcome.action == "reauth_required"
    assert "stopped before storing it" in outcome.detail
    assert token_state(auth_settings, redis_client) == "reauth_required"


def test_token_failing_verification_is_never_stored(auth_settings: Any,
                                                    redis_client: redis.Redis,
                                                    fake_auth: FakeAuthServer,
                                                    make_settings: Any) -> None:
    _authorize(auth_settings, redis_client, fake_auth)
    before = current_access_token(auth_settings, redis_client)
    wrong_client = auth_settings.model_copy(update={"client_id": "someone-else"})
    outcome = refresh(wrong_client, redis_client, force=True)
    assert outcome.action == "reauth_required" and "cid" in outcome.detail
    record = TokenStore(auth_settings, redis_client).read()
    assert record.access_token == before.value and record.generation == before.generation
    with pytest.raises(TokenVerificationError):  # and a first authorization is refused too
        with fake_auth.lock:
            body = fake_auth.mint()
        from worker.auth.oauth_client import TokenResponse

        store_authorization(wrong_client, redis_client, TokenResponse(
            body["access_token"], body["refresh_token"], 60, None, "Bearer", time.time()))


def test_missing_refresh_token_on_first_authorization_names_offline_access(
        auth_settings: Any, redis_client: redis.Redis, fake_auth: FakeAuthServer) -> None:
    fake_auth.state.issue_refresh_token = False
    with pytest.raises(OAuthServerError, match="offline_access"):
        _authorize(auth_settings, redis_client, fake_auth)
    assert token_state(auth_settings, redis_client) == "not_authorized"


def test_client_errors_are_translated(auth_settings: Any, fake_auth: FakeAuthServer) -> None:
    from worker.errors import OAuthTransientError

    client = OAuthClient(auth_settings)
    fake_auth.state.faults = [500]
    with pytest.raises(OAuthTransientError) as server_error:
        client.refresh("whatever")
    assert server_error.value.status_code == 500
    with pytest.raises(OAuthServerError) as grant:
        client.refresh("not-a-token")
    assert grant.value.error == "invalid_grant" and not isinstance(grant.value,
                                                                    OAuthTransientError)
    dead = auth_settings.model_copy(update={"token_url": "http://127.0.0.1:9/token"})
    with pytest.raises(OAuthTransientError) as refused:
        OAuthClient(dead).refresh("x")
    assert refused.value.error == "connection_error"
