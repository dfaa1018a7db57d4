"""The composition root: one `Account` per process, built once and handed to what needs it.

An Account is a `Scope` (settings read once, one Redis client, the key names) that also holds
the parts built on it, each made once on first use and shared by every thread: the token store
(its Fernet key and scripts), the JWKS cache, the ledger, the fleet limiter, the parking lot,
the dead letters, the retry schedule, the custom-field resolver and the bulk gate. Delivery
(one per thread: it holds an HTTP session), the importer and the reconciler are built from
them. The tasks, beat tasks, the CLI, the intake and `status` take their Account from here;
nothing below this module reads the environment or derives key names itself.

`Account.current()` is the process's own, rebuilt in a forked child (a prefork pool process
must not share its parent's HTTP sessions or lock threads). `Account(settings, redis)` builds
one for a test, a CLI command or a demo.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from functools import cached_property
from typing import Any

from redis import Redis

from worker.auth.jwt_verify import JwksCache, jwks_cache
from worker.auth.refresher import RefreshOutcome, refresh
from worker.auth.token_store import TokenStore
from worker.base.redis_conn import get_redis
from worker.base.scope import Scope
from worker.base.settings import Settings, get_settings, load_settings
from worker.bulk.backlog import BacklogStager
from worker.bulk.importer import Importer
from worker.bulk.staging import BulkGate
from worker.delivery.contacts import ContactsClient
from worker.delivery.custom_fields import CustomFieldResolver
from worker.delivery.ratelimit import FleetLimiter
from worker.delivery.run import Delivery
from worker.ledger.deadletter import DeadLetters
from worker.ledger.ledger import Ledger
from worker.ledger.parking import ParkingLot
from worker.ledger.reconcile import Reconciler
from worker.ledger.schedule import Schedule

_current: tuple[int, Account] | None = None
_current_lock = threading.Lock()


class Account(Scope):
    """Settings, Redis, keys and the parts built on them, for one Constant Contact account."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        super().__init__(settings, redis)
        self._threads = threading.local()

    @classmethod
    def current(cls) -> Account:
        """This process's Account: the process's settings (`get_settings`, read once) and
        shared client (`get_redis`); rebuilt in a forked child and when the settings were
        re-read (tests clear `get_settings`)."""
        global _current
        settings = get_settings()
        with _current_lock:
            if (_current is None or _current[0] != os.getpid()
                    or _current[1].settings is not settings):
                _current = (os.getpid(), cls(settings, get_redis(settings)))
            return _current[1]

    @classmethod
    def load(cls) -> Account:
        """A new Account from the environment (a CLI command: one per invocation)."""
        settings = load_settings()
        return cls(settings, get_redis(settings))

    # --- parts shared by the process ---------------------------------------------------------
    @cached_property
    def tokens(self) -> TokenStore:
        return TokenStore(self)

    @cached_property
    def jwks(self) -> JwksCache:
        return jwks_cache(self.settings)

    @cached_property
    def ledger(self) -> Ledger:
        return Ledger(self)

    @cached_property
    def limiter(self) -> FleetLimiter:
        return FleetLimiter(self)

    @cached_property
    def parking(self) -> ParkingLot:
        return ParkingLot(self, self.ledger)

    @cached_property
    def dead_letters(self) -> DeadLetters:
        return DeadLetters(self, self.ledger)

    @cached_property
    def schedule(self) -> Schedule:
        return Schedule(self)

    @cached_property
    def custom_fields(self) -> CustomFieldResolver:
        return CustomFieldResolver(self)

    @cached_property
    def bulk_gate(self) -> BulkGate:
        return BulkGate(self, self.ledger, self.limiter)

    # --- what is built from them ---------------------------------------------------------
    def delivery(self) -> Delivery:
        """This thread's Delivery (an HTTP session is not shared across threads)."""
        delivery: Delivery | None = getattr(self._threads, "delivery", None)
        if delivery is None:
            delivery = self._threads.delivery = self.new_delivery()
        return delivery

    def new_delivery(self, *, client: ContactsClient | None = None,
                     clock: Callable[[], float] = time.time, **options: Any) -> Delivery:
        """A Delivery of its own (tests give a fake client or clock)."""
        return Delivery(self, tokens=self.tokens, ledger=self.ledger, limiter=self.limiter,
                        parking=self.parking, dead_letters=self.dead_letters,
                        fields=self.custom_fields, bulk=self.bulk_gate, client=client,
                        clock=clock, **options)

    def importer(self, *, client: ContactsClient | None = None,
                 clock: Callable[[], float] = time.time) -> Importer:
        return Importer(self, tokens=self.tokens, limiter=self.limiter, ledger=self.ledger,
                        dead_letters=self.dead_letters, gate=self.bulk_gate, client=client,
                        clock=clock)

    def backlog_stager(self) -> BacklogStager:
        return BacklogStager(self, self.ledger, self.bulk_gate)

    def reconciler(self, **options: Any) -> Reconciler:
        options.setdefault("give_back", lambda: self.backlog_stager().give_back_when_off())
        return Reconciler(self, self.ledger, self.schedule, **options)

    def refresh(self, **options: Any) -> RefreshOutcome:
        """The locked refresh (worker/auth/refresher.py) with this process's JWKS cache."""
        options.setdefault("jwks", self.jwks)
        return refresh(self.tokens, **options)
