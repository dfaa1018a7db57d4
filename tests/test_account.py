"""One Account per process: built once from the environment, its parts made once and shared,
a Delivery per thread, and a new Account in a forked child (a prefork pool process).

Building an Account or its parts opens no connection, so these tests need no Redis.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest

from worker.account import Account
from worker.auth.token_record import TokenRecord
from worker.auth.token_store import Kept
from worker.base.settings import get_settings
from worker.delivery.run import Delivery


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADSYNC_REDIS_URL", "redis://127.0.0.1:1/0")  # never connected
    monkeypatch.setenv("LEADSYNC_KEY_PREFIX", "acct-test")
    get_settings.cache_clear()


def test_the_process_account_is_built_once_and_its_parts_are_shared(environment: None) -> None:
    account = Account.current()
    assert Account.current() is account
    assert account.settings is get_settings() and account.keys.token == "acct-test:token:default"
    delivery = account.delivery()
    assert delivery is account.delivery()  # this thread's, kept
    # What the process shares is built once: no token store (Fernet key, script) per lead.
    assert delivery.tokens is account.tokens and account.tokens is account.tokens
    assert delivery.ledger is account.ledger is account.parking.ledger
    assert account.dead_letters.ledger is account.ledger
    assert delivery.limiter is account.limiter and delivery.bulk is account.bulk_gate
    assert account.bulk_gate.ledger is account.ledger


def test_each_thread_gets_its_own_delivery_over_the_same_parts(environment: None) -> None:
    account = Account.current()
    seen: list[Delivery] = []
    thread = threading.Thread(target=lambda: seen.append(account.delivery()))
    thread.start()
    thread.join()
    (other,) = seen
    assert other is not account.delivery()  # its own HTTP session
    assert other.client is not account.delivery().client
    assert other.ledger is account.ledger and other.tokens is account.tokens


def test_re_read_settings_give_a_new_account(environment: None,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    first = Account.current()
    monkeypatch.setenv("LEADSYNC_KEY_PREFIX", "acct-test-2")
    assert Account.current() is first  # the environment is read once
    get_settings.cache_clear()
    second = Account.current()
    assert second is not first and second.keys.token == "acct-test-2:token:default"


# Python 3.12 warns about fork() in a process with threads (pytest's, the sandbox's); the child
# here only builds objects and leaves with os._exit.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_builds_its_own_account(environment: None) -> None:
    parent = Account.current()
    parent_delivery = parent.delivery()
    # The parent's kept token record (worker/auth/access.py) stays the parent's.
    parent.tokens.keep(Kept("stored", TokenRecord(access_token="a"), time.monotonic()))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave without running any of pytest's teardown
        ok = 0
        try:
            child = Account.current()
            ok = int(child is not parent and child is Account.current()
                     and child.delivery() is not parent_delivery
                     and child.settings is parent.settings  # same settings, read once
                     and child.tokens is not parent.tokens and child.tokens.kept is None)
        finally:
            os.write(write, str(ok).encode())
            os._exit(0)
    os.close(write)
    answer = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == b"1"
    assert Account.current() is parent  # the parent keeps its own


def test_a_test_account_takes_settings_and_a_client(make_settings: Any) -> None:
    import redis

    client = redis.Redis(port=1)  # never connected
    account = Account(make_settings(key_prefix="mine"), client)
    assert account.redis is client and account.ledger.redis is client
    assert account.keys.bulk.staged == "mine:bulk:default:staged"
    assert account.new_delivery() is not account.new_delivery()  # a fresh one each call
