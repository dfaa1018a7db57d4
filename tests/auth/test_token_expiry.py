"""Never send a token known to be expired (issue 9): the refresh lead follows the lifetime and
the beat interval, short-lived tokens are refreshed on the workers' request, and a worker holding
an expired token waits for the new generation (polling Redis, no API request) or gets a wait that
spends no retry. Real Redis; the refresh the workers ask for is played by a thread here."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis

from worker.account import Account
from worker.auth.access import token_checker, usable_access_token
from worker.auth.timing import EXPIRY_SKEW_S, beat_can_serve, refresh_lead_s
from worker.auth.token_record import TokenRecord
from worker.auth.token_store import TokenStore
from worker.base.errors import RefreshLockTimeoutError
from worker.base.keys import Keys
from worker.base.settings import Settings
from worker.delivery.outcome import Action, classify

pytestmark = pytest.mark.redis
DAY_S = 86_400.0


def _token(lifetime_s: float, left_s: float, value: str = "access-1") -> TokenRecord:
    now = time.time()
    expires = now + left_s
    return TokenRecord(access_token=value, refresh_token="refresh-1",
                       issued_at=expires - lifetime_s, expires_at=expires,
                       scopes="contact_data offline_access")


def _requested(settings: Settings, r: redis.Redis) -> bool:
    return bool(r.exists(Keys(settings.key_prefix, settings.account).token_refresh_requested))


def _store_later(store: TokenStore, generation: int, record: TokenRecord,
                 after_s: float) -> threading.Thread:
    """The refresher, finishing `after_s` from now (as the control worker would)."""
    def write() -> None:
        time.sleep(after_s)
        store.replace(generation, record)

    thread = threading.Thread(target=write)
    thread.start()
    return thread


@pytest.fixture
def settings(make_settings: Any, redis_url: str) -> Settings:
    settings: Settings = make_settings(redis_url=redis_url)  # the defaults: beat 30 s, 10 s HTTP
    return settings


def test_refresh_lead_follows_lifetime_and_beat_interval(settings: Settings) -> None:
    # Constant Contact's 24 h token: the margin (6 h) is well beyond two beats + a request.
    assert refresh_lead_s(settings, DAY_S) == 0.25 * DAY_S and beat_can_serve(settings, DAY_S)
    # 5 minutes: the margin (75 s) is more than 2 x 30 s + 10 s.
    assert refresh_lead_s(settings, 300) == 75
    # 100 s: two beat intervals and a request (70 s) beat the margin (25 s).
    assert refresh_lead_s(settings, 100) == 70 and beat_can_serve(settings, 100)
    # 10 s: no beat schedule can serve it; half the lifetime, asked for by the workers.
    assert refresh_lead_s(settings, 10) == 5 and not beat_can_serve(settings, 10)
    faster = settings.model_copy(update={"refresh_interval_s": 1.0})  # 2 x 1 s + 10 s = 12 s
    assert beat_can_serve(faster, 10) is False and beat_can_serve(faster, 60) is True
    assert refresh_lead_s(faster, 60) == 15  # the margin again


def test_fresh_long_lived_token_is_handed_out_without_asking(settings: Settings,
                                                             redis_client: redis.Redis) -> None:
    tokens = Account(settings, redis_client).tokens
    tokens.replace(0, _token(DAY_S, DAY_S - 60))
    token = usable_access_token(tokens, wait_s=1)
    assert token.value == "access-1" and not _requested(settings, redis_client)


def test_short_lived_token_in_its_lead_is_refreshed_on_the_workers_request(
        settings: Settings, redis_client: redis.Redis) -> None:
    tokens = Account(settings, redis_client).tokens
    tokens.replace(0, _token(10, 4))  # 4 s of 10 left: in the lead
    token = usable_access_token(tokens, wait_s=1)
    assert token.value == "access-1"  # still good: used now, the refresh is on its way
    assert _requested(settings, redis_client)
    control = redis_client.lrange("leadsync-control", 0, -1)
    assert len(control) == 1  # one refresh task, however many workers ask
    usable_access_token(tokens, wait_s=1)
    assert len(redis_client.lrange("leadsync-control", 0, -1)) == 1


def test_expired_token_waits_for_the_new_generation_without_a_request(
        settings: Settings, redis_client: redis.Redis) -> None:
    tokens = Account(settings, redis_client).tokens
    store = tokens
    store.replace(0, _token(10, EXPIRY_SKEW_S / 2))  # exp minus the skew has passed
    refresher = _store_later(store, 1, _token(10, 10, "access-2"), after_s=0.3)
    started = time.monotonic()
    token = usable_access_token(tokens, wait_s=5)
    refresher.join()
    assert (token.value, token.generation) == ("access-2", 2)
    assert time.monotonic() - started < 5
    assert _requested(settings, redis_client)


def test_no_refreshed_token_in_time_is_a_wait_that_spends_nothing(
        settings: Settings, redis_client: redis.Redis) -> None:
    tokens = Account(settings, redis_client).tokens
    tokens.replace(0, _token(10, -3))  # expired 3 s ago
    with pytest.raises(RefreshLockTimeoutError) as waited:
        usable_access_token(tokens, wait_s=0.3)
    decision = classify(waited.value)
    assert decision.action is Action.WAIT and decision.spends_budget is False
    assert "access-1" not in str(waited.value)


def test_check_before_each_request_swaps_an_expiring_token_for_the_new_one(
        settings: Settings, redis_client: redis.Redis) -> None:
    """After the limiter's wait: a newer stored token replaces the one read earlier; an
    expiring current one is waited for, never sent."""
    tokens = Account(settings, redis_client).tokens
    store = tokens
    store.replace(0, _token(10, 6))
    check = token_checker(tokens, wait_s=5)
    assert check("access-1") == "access-1"
    store.replace(1, _token(10, 10, "access-2"))
    assert check("access-1") == "access-2"  # read before the wait, refreshed meanwhile
    store.replace(2, _token(10, EXPIRY_SKEW_S / 2, "access-3"))
    refresher = _store_later(store, 3, _token(10, 10, "access-4"), after_s=0.3)
    assert check("access-3") == "access-4"
    refresher.join()
    store.replace(4, _token(10, -1, "access-5"))
    with pytest.raises(RefreshLockTimeoutError):
        token_checker(tokens, wait_s=0.2)("access-5")
