"""A busy process reads the token hash about once per FRESH_S, not once per lead, and still sees
a rotated token or a changed state within FRESH_S (worker/auth/access.py).

In process, against the sandbox and the private Redis: `worker` is the delivering process's
Account; `other` is another process's (the beat's refresher, a person running `leadsync auth`),
on a Redis connection of its own, so this process hears of its writes only through Redis.
What reaches the token hash is counted by Redis itself (MONITOR).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet
from pydantic import SecretStr

from tests.fixtures.delivery import DeliveryStack
from worker.account import Account
from worker.auth.access import FRESH_S
from worker.base.settings import Settings
from worker.delivery.result import Result
from worker.leads.lead import parse_lead

pytestmark = pytest.mark.redis
LEADS = 100


class Reads:
    """Counts the commands Redis runs on one key (MONITOR) until `stop`."""

    def __init__(self, url: str, key: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.key = key
        self.commands: list[str] = []
        self.listening = threading.Event()
        self.stop_word = f"reads-stop-{time.time()}"
        self.thread = threading.Thread(target=self._listen, daemon=True)

    def _listen(self) -> None:
        with self.client.monitor() as monitor:
            self.listening.set()
            for entry in monitor.listen():
                words = entry["command"].split()
                if self.stop_word in words:
                    return
                if len(words) > 1 and words[1] == self.key and entry["client_type"] != "lua":
                    self.commands.append(words[0].upper())

    def stop(self) -> None:
        self.client.echo(self.stop_word)
        self.thread.join(30)
        assert not self.thread.is_alive()
        self.client.close()


@contextmanager
def token_reads(url: str, settings: Settings) -> Iterator[Reads]:
    reads = Reads(url, Account(settings, redis.Redis.from_url(url)).keys.token)
    reads.thread.start()
    assert reads.listening.wait(10)
    try:
        yield reads
    finally:
        reads.stop()


class Stream:
    """One worker process delivering consented leads one after another, as fast as it can."""

    def __init__(self, account: Account) -> None:
        self.delivery = account.new_delivery()
        self.sent = 0

    def one(self) -> Result:
        self.sent += 1
        return self.delivery.run(parse_lead({"email": f"kept{self.sent}@probe.example",
                                             "first_name": "Kept", "consent": True}))

    def until(self, moment: float) -> list[Result]:
        """Leads one after another until time.monotonic() passes `moment` (at least one)."""
        results = [self.one()]
        while time.monotonic() <= moment:
            results.append(self.one())
        return results


def other_account(stack: DeliveryStack, redis_url: str, **changes: Any) -> Account:
    settings = stack.settings.model_copy(update=changes)
    return Account(settings, redis.Redis.from_url(redis_url))


@pytest.mark.parametrize("token_key", [False, True], ids=["clear", "encrypted"])
def test_a_busy_process_reads_the_token_hash_about_once_per_fresh_s_not_once_per_lead(
    token_key: bool, delivery_stack: Callable[..., DeliveryStack], redis_client: redis.Redis,
    redis_url: str
) -> None:
    env = {"LEADSYNC_TOKEN_KEY": Fernet.generate_key().decode()} if token_key else {}
    stack = delivery_stack(settings_env=env)
    stream = Stream(Account(stack.settings, redis_client))
    assert stream.one().status == "delivered"  # the process opens the record once
    with token_reads(redis_url, stack.settings) as reads:
        started = time.monotonic()
        results = [stream.one() for _ in range(LEADS)]
        elapsed = time.monotonic() - started
    assert [r.status for r in results] == ["delivered"] * LEADS
    assert stack.sandbox.stats()["sign_up_form"]["max_calls_per_contact"] == 1
    print(f"\nKEPT {LEADS} leads in {elapsed:.2f} s: token hash {len(reads.commands)} times "
          f"({sorted(set(reads.commands))})")
    # A probe when the kept record is more than FRESH_S old (the full read only when the
    # record changed, never here): one per FRESH_S, and far fewer than one per lead.
    assert set(reads.commands) <= {"HMGET"}
    assert len(reads.commands) <= elapsed / FRESH_S + 2
    assert len(reads.commands) * 5 <= LEADS


def test_a_rotated_token_is_used_within_fresh_s_and_a_401_before_loses_no_lead(
    delivery_stack: Callable[..., DeliveryStack], redis_client: redis.Redis, redis_url: str
) -> None:
    # The sandbox kills the old access token when it refreshes: a lead sent with it gets a 401.
    stack = delivery_stack(revoke_access_on_refresh=True)
    worker = Account(stack.settings, redis_client)
    stream = Stream(worker)
    assert stream.one().status == "delivered"
    other = other_account(stack, redis_url)
    first = other.tokens.read()
    assert first is not None
    outcome = other.refresh(force=True)  # the beat's refresher, in its own process
    rotated = time.monotonic()
    assert outcome.generation == first.generation + 1, outcome
    soon = stream.until(rotated + FRESH_S)  # within FRESH_S: the kept token, or the new one
    refused_soon = stack.sandbox.stats()["unauthorized_401"]
    later = [stream.one() for _ in range(20)]
    stats = stack.sandbox.stats()
    print(f"\nROTATED: {len(soon)} leads within {FRESH_S} s, {refused_soon} x 401 among them")
    assert [r.status for r in soon + later] == ["delivered"] * (len(soon) + len(later))
    assert not any(r.duplicate for r in soon + later)
    assert refused_soon <= len(soon)  # at most the lead's first try, then the new token
    assert stats["unauthorized_401"] == refused_soon  # past FRESH_S: the new token only
    assert stats["sign_up_form"]["max_calls_per_contact"] == 1
    kept = worker.tokens.kept
    assert kept is not None and kept.record.generation == outcome.generation


def _reauth(other: Account) -> None:
    record = other.tokens.read()
    assert record is not None
    other.tokens.update(record.generation, state="reauth_required",
                        state_reason="invalid_grant")


def _logout(other: Account) -> None:
    other.tokens.delete()


@pytest.mark.parametrize(("change", "reason"), [(_reauth, "reauth"), (_logout, "reauth")],
                         ids=["reauth_required", "not_authorized"])
def test_a_state_change_parks_every_lead_started_fresh_s_after_it(
    change: Callable[[Account], None], reason: str,
    delivery_stack: Callable[..., DeliveryStack], redis_client: redis.Redis, redis_url: str
) -> None:
    stack = delivery_stack()
    stream = Stream(Account(stack.settings, redis_client))
    assert stream.one().status == "delivered"
    change(other_account(stack, redis_url))
    changed = time.monotonic()
    soon = stream.until(changed + FRESH_S)
    sent = stack.sandbox.stats()["api_requests"]
    later = [stream.one() for _ in range(10)]
    print(f"\nCHANGED: {Counter(r.status.value for r in soon)} within {FRESH_S} s")
    assert {r.status for r in soon} <= {"delivered", "parked"}
    assert [(r.status, r.detail["reason"]) for r in later] == [("parked", reason)] * 10
    assert stack.sandbox.stats()["api_requests"] == sent  # nothing sent past FRESH_S


def test_a_record_another_key_wrote_parks_leads_within_fresh_s(
    delivery_stack: Callable[..., DeliveryStack], redis_client: redis.Redis, redis_url: str
) -> None:
    stack = delivery_stack(settings_env={"LEADSYNC_TOKEN_KEY": Fernet.generate_key().decode()})
    worker = Account(stack.settings, redis_client)
    stream = Stream(worker)
    assert stream.one().status == "delivered"
    record = worker.tokens.read()
    assert record is not None
    # Another deployment's key (`auth import` run with the wrong LEADSYNC_TOKEN_KEY).
    other = other_account(stack, redis_url,
                          token_key=SecretStr(Fernet.generate_key().decode()))
    other.tokens.replace(record.generation, record)
    changed = time.monotonic()
    soon = stream.until(changed + FRESH_S)
    sent = stack.sandbox.stats()["api_requests"]
    later = [stream.one() for _ in range(5)]
    assert {r.status for r in soon} <= {"delivered", "parked"}
    assert [(r.status, r.detail["reason"]) for r in later] == [("parked", "token_key")] * 5
    assert stack.sandbox.stats()["api_requests"] == sent
