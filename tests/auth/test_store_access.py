"""The token record on real Redis: compare-and-set, encryption at rest, and the access API
that delivery relies on (state, sending_possible, de-duplicated refresh requests)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet

from worker.account import Account
from worker.auth.access import (
    current_access_token,
    request_refresh,
    sending_possible,
    token_state,
)
from worker.auth.token_record import STATE_REAUTH_REQUIRED, TokenRecord
from worker.auth.token_store import StaleWriteError
from worker.base.errors import ConfigError, NotAuthorizedError, ReauthRequiredError
from worker.base.keys import Keys

pytestmark = pytest.mark.redis


def _record(access: str = "access-1", refresh: str = "refresh-1") -> TokenRecord:
    now = time.time()
    return TokenRecord(access_token=access, refresh_token=refresh, issued_at=now,
                       expires_at=now + 3600, scopes="contact_data offline_access")


def test_stale_writer_is_refused_and_rereads(make_settings: Any, redis_url: str,
                                             redis_client: redis.Redis) -> None:
    store = Account(make_settings(redis_url=redis_url), redis_client).tokens
    assert store.replace(0, _record()) == 1
    seen = store.read()
    assert seen is not None and seen.generation == 1
    # Process A writes generation 2; process B, still holding generation 1, is refused.
    assert store.replace(seen.generation, _record("access-2", "refresh-2")) == 2
    with pytest.raises(StaleWriteError) as stale:
        store.replace(seen.generation, _record("access-B", "refresh-B"))
    assert stale.value.current_generation == 2
    latest = store.read()
    assert latest is not None
    assert (latest.refresh_token, latest.generation) == ("refresh-2", 2)


def test_update_never_resurrects_or_overwrites_newer_pair(make_settings: Any, redis_url: str,
                                                         redis_client: redis.Redis) -> None:
    store = Account(make_settings(redis_url=redis_url), redis_client).tokens
    with pytest.raises(StaleWriteError):
        store.update(0, state=STATE_REAUTH_REQUIRED)  # nothing stored: nothing to mark
    store.replace(0, _record())
    store.replace(1, _record("a2", "r2"))
    with pytest.raises(StaleWriteError):
        store.update(1, state=STATE_REAUTH_REQUIRED)  # judged an old token: refused
    assert token_state(Account(make_settings(redis_url=redis_url), redis_client).tokens) == "ok"


def test_tokens_encrypted_at_rest_with_key(make_settings: Any, redis_url: str,
                                           redis_client: redis.Redis) -> None:
    key = Fernet.generate_key().decode()
    settings = make_settings(redis_url=redis_url, token_key=key)
    tokens = Account(settings, redis_client).tokens
    tokens.replace(0, _record("access-secret", "refresh-secret"))
    raw = redis_client.hgetall(Keys().token)
    stored = b"".join(v if isinstance(v, bytes) else v.encode() for v in raw.values())
    assert b"refresh-secret" not in stored and b"access-secret" not in stored
    assert current_access_token(tokens).value == "access-secret"
    # Without (or with the wrong) key the worker says which variable to fix.
    with pytest.raises(ConfigError, match="LEADSYNC_TOKEN_KEY"):
        current_access_token(Account(make_settings(redis_url=redis_url), redis_client).tokens)
    other = make_settings(redis_url=redis_url, token_key=Fernet.generate_key().decode())
    with pytest.raises(ConfigError, match="LEADSYNC_TOKEN_KEY"):
        current_access_token(Account(other, redis_client).tokens)


def test_access_api_states(make_settings: Any, redis_url: str,
                           redis_client: redis.Redis) -> None:
    settings = make_settings(redis_url=redis_url)
    tokens = Account(settings, redis_client).tokens
    assert token_state(tokens) == "not_authorized"
    assert sending_possible(tokens) is False
    with pytest.raises(NotAuthorizedError):
        current_access_token(tokens)
    store = tokens
    store.replace(0, _record())
    token = current_access_token(tokens)
    assert (token.value, token.generation) == ("access-1", 1)
    assert "access-1" not in repr(token)
    assert sending_possible(tokens) is True
    store.update(1, state=STATE_REAUTH_REQUIRED, state_reason="invalid_grant")
    assert token_state(tokens) == "reauth_required"
    assert sending_possible(tokens) is False
    with pytest.raises(ReauthRequiredError, match="leadsync auth device"):
        current_access_token(tokens)


def test_request_refresh_sends_one_task_per_generation(make_settings: Any, redis_url: str,
                                                       redis_client: redis.Redis) -> None:
    settings = make_settings(redis_url=redis_url)
    tokens = Account(settings, redis_client).tokens
    tokens.replace(0, _record())
    for _ in range(5):  # five workers see the same 401
        request_refresh(tokens, seen_generation=1)
    messages = [json.loads(m) for m in redis_client.lrange("leadsync-control", 0, -1)]
    assert len(messages) == 1
    assert messages[0]["headers"]["task"] == "leadsync.refresh_token"
    assert "'seen_generation': 1" in messages[0]["headers"]["kwargsrepr"]
    request_refresh(tokens, seen_generation=0)  # older token: already replaced
    assert redis_client.llen("leadsync-control") == 1


@pytest.mark.parametrize("key", [None, "fernet"])
def test_token_status_reads_the_token_hash_once(key: str | None, make_settings: Any,
                                                redis_url: str, redis_client: redis.Redis,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The record, how it sits at rest and the state all come from one HGETALL."""
    from worker.auth.status import token_status

    token_key = Fernet.generate_key().decode() if key else None
    tokens = Account(make_settings(redis_url=redis_url, token_key=token_key), redis_client).tokens
    tokens.replace(0, _record())
    reads: list[str] = []
    real = redis_client.hgetall

    def counting(name: Any) -> Any:
        reads.append(name.decode() if isinstance(name, bytes) else str(name))
        return real(name)

    monkeypatch.setattr(redis_client, "hgetall", counting)
    info = token_status(tokens)
    assert info["state"] == "ok" and info["generation"] == 1
    assert info["tokens_at_rest"] == ("encrypted" if key else "clear")
    assert reads.count(Keys().token) == 1, reads
