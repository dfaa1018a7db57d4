"""Every Redis Lua script of leadsync, by name: one file each in this folder, run by SHA.

Why one loader: EVAL sends the whole script text on every call (the fetch did so on every poll),
while EVALSHA sends 40 characters, and a script run by SHA must be loaded again when Redis has
forgotten it (a restart, SCRIPT FLUSH, a fail-over to a replica that never saw it). Doing that in
one place means no caller can forget the reload. Each file starts with a comment giving its
KEYS/ARGV contract and its return value (tests/test_lua_scripts.py checks it).

    script("acquire").run(redis, keys=[...], args=[...])      # a plain client
    script("reliable_pop").evalsha_command(keys, args)          # for a raw connection
    run_batch(redis, lambda batch: batch.script(script("ledger"), keys, args).pipe.get(k))

`run_batch` sends several commands and scripts in one round trip (a plain pipeline). redis-py's
own Script objects in a pipeline first send SCRIPT EXISTS on every execute (a second round
trip); a batch sends EVALSHA alone and loads a forgotten script only when Redis says NOSCRIPT.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
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
    source = _expand(resources.files(__name__).joinpath(f"{name}.lua").read_text(encoding="utf-8"))
    return LuaScript(name, source, hashlib.sha1(source.encode("utf-8")).hexdigest())


def _expand(source: str) -> str:
    """Replace each `-- #include NAME ...` line by lib/NAME.lua: Redis scripts cannot import
    one another, and a helper several scripts share (kombu's priority-list choice) is then
    written once. The SHA is of the expanded text, the one Redis runs."""
    lines = []
    for line in source.splitlines(keepends=True):
        if line.startswith("-- #include "):
            name = line.removeprefix("-- #include ").split(":")[0].strip()
            line = resources.files(__name__).joinpath("lib", f"{name}.lua").read_text(
                encoding="utf-8")
        lines.append(line)
    return "".join(lines)


def contract_comment(name: str) -> str:
    """The comment the script starts with (its KEYS/ARGV/return contract)."""
    lines = []
    for line in script(name).source.splitlines():
        if not line.startswith("--"):
            break
        lines.append(line)
    return "\n".join(lines)


class Batch:
    """Commands for one round trip: a non-transactional pipeline whose scripts run by SHA."""

    def __init__(self, client: Any) -> None:
        self.pipe = client.pipeline(transaction=False)
        # position in the pipeline -> (script, keys, args), to send again after NOSCRIPT
        self.calls: dict[int, tuple[LuaScript, list[EncodableArg], list[EncodableArg]]] = {}

    def script(self, lua: LuaScript, keys: Sequence[EncodableArg],
               args: Sequence[EncodableArg] = ()) -> Batch:
        self.calls[len(self.pipe)] = (lua, list(keys), list(args))
        self.pipe.execute_command("EVALSHA", lua.sha, len(keys), *keys, *args)
        return self


def run_batch(client: Any, build: Callable[[Batch], object]) -> list[Any]:
    """Send what `build` adds to a Batch in one round trip; the replies, in order.

    A script Redis answers NOSCRIPT for (it forgot it: restart, SCRIPT FLUSH, fail-over) did
    nothing; it is loaded and sent again, alone, after the rest of the batch ran. So steps whose
    order matters belong in one script, not in two of a batch. Any other error reply is raised
    after every command has run.
    """
    batch = Batch(client)
    build(batch)
    replies: list[Any] = batch.pipe.execute(raise_on_error=False)
    missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:
        again = client.pipeline(transaction=False)
        scripts = {batch.calls[i][0].sha: batch.calls[i][0] for i in missing}
        for lua in scripts.values():
            again.script_load(lua.source)
        for i in missing:
            lua, keys, args = batch.calls[i]
            again.execute_command("EVALSHA", lua.sha, len(keys), *keys, *args)
        answers = again.execute(raise_on_error=False)[len(scripts):]
        for i, answer in zip(missing, answers, strict=True):
            replies[i] = answer
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies
