"""Every Lua script lives in worker/lua/, states its contract and runs by SHA via one loader."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from worker import lua

WORKER = Path(__file__).resolve().parents[1] / "worker"
# Inline scripts still to move into worker/lua/ (their modules were being rewritten elsewhere
# when the loader arrived). This list may only shrink.
NOT_YET_MOVED: set[str] = set()


def test_the_loader_knows_every_script_of_the_folder() -> None:
    assert lua.names() == sorted(p.stem for p in (WORKER / "lua").glob("*.lua"))
    assert {"acquire", "reliable_pop"} <= set(lua.names())


@pytest.mark.parametrize("name", lua.names())
def test_each_script_starts_with_its_keys_argv_and_return_contract(name: str) -> None:
    comment = lua.contract_comment(name)
    for word in ("KEYS[1]", "ARGV[1]", "Return"):
        assert word in comment, f"worker/lua/{name}.lua: its leading comment lacks {word}"


def test_no_python_module_carries_lua_of_its_own() -> None:
    inline = {str(path.relative_to(WORKER)) for path in WORKER.rglob("*.py")
              if "redis.call(" in path.read_text(encoding="utf-8")
              and path.parent != WORKER / "lua"}
    assert inline <= NOT_YET_MOVED, f"move these scripts into worker/lua/: {inline}"


@pytest.mark.redis
@pytest.mark.parametrize("name", lua.names())
def test_the_sha_is_the_one_redis_computes(redis_client: redis.Redis, name: str) -> None:
    script = lua.script(name)
    assert redis_client.script_load(script.source) == script.sha


@pytest.mark.redis
def test_a_script_redis_forgot_is_loaded_again_on_the_next_call(
    redis_client: redis.Redis,
) -> None:
    acquire = lua.script("acquire")
    args = [1_000_000, 250, 10, 60]
    assert acquire.run(redis_client, ["tat", "quota"], args)[0] == 1
    redis_client.script_flush()  # a restart, or a fail-over to a replica that never saw it
    assert redis_client.script_exists(acquire.sha) == [False]
    assert acquire.run(redis_client, ["tat", "quota"], [1_000_250, 250, 10, 60])[0] == 1
    assert redis_client.script_exists(acquire.sha) == [True]
