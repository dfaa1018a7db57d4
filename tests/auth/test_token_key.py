"""LEADSYNC_TOKEN_KEY on real Redis: unreadable tokens are a state reported once per incident,
leads park with reason token_key, clear tokens under a key are reported and re-encrypted, and
the account's email is sealed with the tokens (issue 11)."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet

from worker.account import Account
from worker.auth import token_key
from worker.auth.access import current_access_token, sending_possible, token_state
from worker.auth.grant import store_imported_refresh_token
from worker.auth.status import token_status
from worker.auth.token_record import TokenRecord
from worker.base.errors import ConfigError, TokenKeyError
from worker.base.keys import Keys
from worker.delivery.outcome import Action, classify
from worker.leads.lead import parse_lead
from worker.ledger.parking import QUOTA, TOKEN_KEY

pytestmark = pytest.mark.redis
SUB = "owner.person@example.com"


def _record() -> TokenRecord:
    now = time.time()
    return TokenRecord(access_token="access-1", refresh_token="refresh-1", issued_at=now,
                       expires_at=now + 3600, sub=SUB)


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]


@pytest.fixture
def keyed(make_settings: Any, redis_url: str, redis_client: redis.Redis) -> Any:
    """Tokens stored under key K1; returns a settings factory for other keys."""
    right = make_settings(redis_url=redis_url, token_key=Fernet.generate_key().decode())
    Account(right, redis_client).tokens.replace(0, _record())
    return right


def test_wrong_key_is_a_state_and_one_error_per_incident(
    keyed: Any, make_settings: Any, redis_url: str, redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = make_settings(redis_url=redis_url, token_key=Fernet.generate_key().decode())
    account = Account(wrong, redis_client)
    tokens = account.tokens
    caplog.set_level(logging.DEBUG)
    for _ in range(3):
        with pytest.raises(TokenKeyError, match="LEADSYNC_TOKEN_KEY cannot decrypt"):
            current_access_token(tokens)
    other = account.tokens  # another worker process with the same wrong key
    assert token_state(other) == "token_key_invalid"
    assert sending_possible(other) is False
    (error,) = _errors(caplog)
    assert "LEADSYNC_TOKEN_KEY" in error and "parked" in error
    assert token_key.key_fingerprint(wrong) in error
    (incident,) = tokens.incidents.open()
    assert incident["token_key"] == token_key.key_fingerprint(wrong)

    # A quiet spell ends the incident: the next failure is a new one, with a new ERROR.
    field = f"{incident['token_key']}:last"
    redis_client.hset(Keys().token_key_errors, field, time.time() - token_key.QUIET_S - 1)
    assert tokens.incidents.open() == []
    with pytest.raises(TokenKeyError):
        tokens.read()
    assert len(_errors(caplog)) == 2
    # The right key still reads; the decision for a lead is to park, spending nothing.
    assert current_access_token(Account(keyed, redis_client).tokens).value == "access-1"
    decision = classify(TokenKeyError("LEADSYNC_TOKEN_KEY cannot decrypt"))
    assert (decision.action, decision.reason_code, decision.spends_budget) == (
        Action.PARK_REAUTH, TOKEN_KEY, False)
    assert isinstance(TokenKeyError("x"), ConfigError)


def test_a_process_that_reads_again_closes_its_incident(
    keyed: Any, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    tokens = Account(keyed, redis_client).tokens
    # This process failed once with this very key (the record was under another key then).
    tokens.incidents.unreadable("LEADSYNC_TOKEN_KEY cannot decrypt")
    assert tokens.incidents.open()
    assert tokens.read() is not None
    assert tokens.incidents.open() == []
    assert any("open again" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("key", [None, "not-a-fernet-key"])
def test_no_key_or_a_malformed_key_on_encrypted_tokens_is_the_same_state(
    key: str | None, keyed: Any, make_settings: Any, redis_url: str, redis_client: redis.Redis,
) -> None:
    settings = make_settings(redis_url=redis_url, token_key=key)
    tokens = Account(settings, redis_client).tokens
    assert token_state(tokens) == "token_key_invalid"
    info = token_status(tokens)
    assert info["state"] == "token_key_invalid" and info["sending_possible"] is False
    assert "LEADSYNC_TOKEN_KEY" in info["state_reason"]
    assert info["tokens_at_rest"] == "encrypted"


def test_sub_is_sealed_with_the_tokens(keyed: Any, redis_client: redis.Redis) -> None:
    tokens = Account(keyed, redis_client).tokens
    raw = redis_client.hgetall(Keys().token)
    assert SUB.encode() not in b"".join(raw.values())
    assert raw[b"sub"].startswith(b"fernet:")
    record = tokens.read()
    assert record is not None and record.sub == SUB
    assert token_status(tokens)["sub"] == SUB


def test_clear_tokens_under_a_key_are_reported_once_and_encrypted_by_the_next_write(
    make_settings: Any, redis_url: str, redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    Account(make_settings(redis_url=redis_url), redis_client).tokens.replace(0, _record())
    keyed = make_settings(redis_url=redis_url, token_key=Fernet.generate_key().decode())
    tokens = Account(keyed, redis_client).tokens
    store = tokens
    caplog.set_level(logging.INFO)
    assert store.at_rest() == "clear"
    for _ in range(3):
        record = store.read()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "in clear" in warnings[0] and "next write" in warnings[0]
    assert token_status(tokens)["tokens_at_rest"] == "clear"

    assert record is not None
    store.replace(record.generation, record.with_(access_token="access-2"))
    assert store.at_rest() == "encrypted"
    assert any("re-encrypted" in r.getMessage() for r in caplog.records)
    assert SUB.encode() not in b"".join(redis_client.hgetall(Keys().token).values())


def test_a_new_authorization_replaces_a_record_the_key_cannot_open(
    keyed: Any, make_settings: Any, redis_url: str, redis_client: redis.Redis,
) -> None:
    """A lost key is fixed by authorizing again under the new key."""
    new = make_settings(redis_url=redis_url, token_key=Fernet.generate_key().decode())
    tokens = Account(new, redis_client).tokens
    assert token_state(tokens) == "token_key_invalid"
    generation = store_imported_refresh_token(tokens, "refresh-new")
    assert generation == 2
    record = tokens.read()
    assert record is not None and record.refresh_token == "refresh-new"
    assert tokens.incidents.open() == []


def test_token_key_leads_resume_only_once_sending_is_possible(
    make_settings: Any, redis_url: str, redis_client: redis.Redis,
) -> None:
    lot = Account(make_settings(redis_url=redis_url), redis_client).parking
    now = time.time()
    lot.park(parse_lead({"email": "a@example.com"}), TOKEN_KEY, now, now=now)
    lot.park(parse_lead({"email": "b@example.com"}), QUOTA, now, now=now)
    assert lot.counts()["by_reason"] == {"reauth": 0, "quota": 1, "token_key": 1}
    assert lot.resume_due(sending_possible=False, now=now + 1) == 1  # the quota lead only
    assert lot.resume_due(sending_possible=True, now=now + 1) == 1
    assert lot.entries() == []
