"""Everything one sandbox holds, in one object (`SandboxServer.state`), behind one lock."""

from __future__ import annotations

import threading
import uuid

from worker.sandbox.activities import Activities
from worker.sandbox.clock import Clock
from worker.sandbox.config import SandboxConfig
from worker.sandbox.contacts_api import ContactsAPI
from worker.sandbox.faults import FaultDice, Faults
from worker.sandbox.keys import KeyRing
from worker.sandbox.limits import DailyQuota, WindowLimiter
from worker.sandbox.lists_api import ListsAPI
from worker.sandbox.stats import Stats
from worker.sandbox.store import Store
from worker.sandbox.tokens import TokenAuthority

_LIST_NAMESPACE = uuid.UUID("7d3c5f0e-2b1a-4c6d-9e8f-0a1b2c3d4e5f")


def default_list_id(client_id: str) -> str:
    """Stable across restarts, so `export LEADSYNC_LIST_IDS=...` keeps working."""
    return str(uuid.uuid5(_LIST_NAMESPACE, f"default-list:{client_id}"))


class SandboxState:
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.lock = threading.RLock()
        self.clock = Clock()
        self.keys = KeyRing()
        self.tokens = TokenAuthority(config, self.keys)
        self.dice = FaultDice(config.seed)
        self.reset_data()

    def reset_data(self) -> None:
        """Contacts, lists, fields, activities, stats, faults and limit counters start over;
        keys and issued tokens stay, so an authorized worker keeps working."""
        config = self.config
        self.store = Store(default_list_id(config.client_id), config.default_list_name,
                           self.clock.now())
        self.stats = Stats()
        self.faults = Faults.from_config(config)
        self.limiter = WindowLimiter(config.rate_limit_per_s, config.rate_limit_window)
        self.token_limiter = WindowLimiter(config.token_rate_limit_per_s, "sliding")
        self.quota = DailyQuota(config.daily_quota)
        self.activities = Activities(self)
        self.contacts_api = ContactsAPI(self)
        self.lists_api = ListsAPI(self)
