"""What the reliable fetch needs from kombu's private Redis channel, checked before it runs.

worker/broker/fetch.py overrides `_brpop_start`/`_brpop_read` of kombu's Redis channel and uses
more of its private members. If a kombu release renamed one, Python would not complain: the
override would simply never be called and stock BRPOP (which can lose a message to a kill -9)
would run. So the app refuses to start, with one line naming what is missing.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from kombu.transport import virtual
from kombu.transport.redis import Channel, MultiChannelPoller, QoS

from worker.base.errors import ConfigError
from worker.base.priority import PRIORITY_STEPS, SEP


class BrokerContractError(ConfigError):
    """The broker (kombu, its options, or Redis) is not what the reliable fetch is built on."""


TESTED_WITH = "5.7"  # kombu's minor version (pyproject.toml pins it)

# (owner, member): overridden by the fetch, or used by it.
REQUIRED: tuple[tuple[Any, str], ...] = (
    (Channel, "_brpop_start"),         # overridden: sends the pop (or the idle BLMOVE)
    (Channel, "_brpop_read"),          # overridden: reads it and delivers
    (Channel, "basic_consume"),        # overridden: notes no_ack consumers
    (Channel, "_q_for_pri"),
    (Channel, "_in_poll"),
    (Channel, "priority_steps"),
    (Channel, "sep"),
    (Channel, "unacked_key"),
    (Channel, "unacked_index_key"),
    (Channel, "ack_emulation"),
    (Channel, "QoS"),
    (QoS, "append"),                   # overridden: skips the second unacked write
    (virtual.QoS, "append"),
    (virtual.Transport, "_deliver"),
)


def kombu_contract_problem() -> str | None:
    """One line naming what kombu lacks for the reliable fetch, or None when all is there."""
    missing = [f"{owner.__module__}.{owner.__qualname__}.{name}"
               for owner, name in REQUIRED if not hasattr(owner, name)]
    # The poller must still start a poll through `_brpop_start`, or the override is skipped.
    register = getattr(MultiChannelPoller, "_register_BRPOP", None)
    if register is None or "_brpop_start" not in register.__code__.co_names:
        missing.append("kombu.transport.redis.MultiChannelPoller._register_BRPOP calling "
                       "_brpop_start")
    # Producers and the Lua scripts name the priority lists themselves (worker/base/priority.py).
    if (getattr(Channel, "sep", SEP), tuple(getattr(Channel, "priority_steps", PRIORITY_STEPS))
            ) != (SEP, PRIORITY_STEPS):
        missing.append(f"priority lists named with sep {SEP!r} and steps {PRIORITY_STEPS}")
    if not missing:
        return None
    return (f"leadsync's reliable fetch needs {', '.join(missing)}, which kombu "
            f"{version('kombu')} does not have; install kombu {TESTED_WITH}.x "
            f"(pyproject.toml pins it)")


def check_channel_instance(channel: Any) -> None:
    """Refuse a built channel whose poll would not reach the reliable fetch."""
    problem = kombu_contract_problem()
    if problem is None and channel.handlers.get("BRPOP") != channel._brpop_read:
        problem = (f"kombu {version('kombu')} no longer reads polls through "
                   f"Channel._brpop_read; install kombu {TESTED_WITH}.x")
    if problem is None and not hasattr(channel, "_queue_cycle"):
        problem = (f"kombu {version('kombu')} has no Channel._queue_cycle; "
                   f"install kombu {TESTED_WITH}.x")
    if problem is not None:
        raise BrokerContractError(problem)
