"""Every Redis Lua script of leadsync, by name: one file each in this folder, run by SHA.

Why one loader: EVAL sends the whole script text on every call (the fetch did so on every poll),
while EVALSHA sends 40 characters, and a script run by SHA must be loaded again when Redis has
forgotten it (a restart, SCRIPT FLUSH, a fail-over to a replica that never saw it). Doing that in
one place means no caller can forget the reload. Each file starts with a comment giving its
KEYS/ARGV contract and its return value (tests/test_lua_scripts.py checks it).

    script("acquire").run(redis, keys=[...], args=[...])      # a plain client
    script("reliable_pop").evalsha_command(keys, args)          # for a raw connection
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError

EncodableArg = str | bytes | int | float


@dataclass(frozen=True)
class LuaScript:
    """One script of this folder: its name, text and SHA1 (what EVALSHA names it by)."""

    name: str
    source: str
    sha: str

    def run(self, client: Any, keys: Sequence[EncodableArg] = (),
            args: Sequence[EncodableArg] = ()) -> Any:
        """EVALSHA on `client`; on NOSCRIPT, load the script and run it once more."""
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            client.script_load(self.source)
            return client.evalsha(self.sha, len(keys), *keys, *args)

    def register(self, client: Any) -> Any:
        """redis-py's Script for this file: runs by SHA, also inside a pipeline or MULTI."""
        return client.register_script(self.source)

    def evalsha_command(self, keys: Sequence[EncodableArg],
                        args: Sequence[EncodableArg] = ()) -> list[EncodableArg]:
        """The EVALSHA command as arguments for `connection.send_command` (no reply read)."""
        return ["EVALSHA", self.sha, len(keys), *keys, *args]

    def load_on(self, connection: Any) -> None:
        """SCRIPT LOAD on a raw connection (after its EVALSHA answered NOSCRIPT)."""
        connection.send_command("SCRIPT", "LOAD", self.source)
        connection.read_response()


def names() -> list[str]:
    """The scripts this folder holds (file names without `.lua`)."""
    folder = resources.files(__name__)
    return sorted(entry.name.removesuffix(".lua") for entry in folder.iterdir()
                  if entry.name.endswith(".lua"))


@functools.cache
def script(name: str) -> LuaScript:
    """The script `worker/lua/<name>.lua`, read once per process."""
    source = resources.files(__name__).joinpath(f"{name}.lua").read_text(encoding="utf-8")
    return LuaScript(name, source, hashlib.sha1(source.encode("utf-8")).hexdigest())


def contract_comment(name: str) -> str:
    """The comment the script starts with (its KEYS/ARGV/return contract)."""
    lines = []
    for line in script(name).source.splitlines():
        if not line.startswith("--"):
            break
        lines.append(line)
    return "\n".join(lines)
