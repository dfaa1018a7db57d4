"""Flower is never served to the network without credentials (issue 11).

The Procfile's own Flower line is started for real without FLOWER_BASIC_AUTH: it must listen on
127.0.0.1 only (read from /proc/net/tcp*) and be unreachable from a test host in its own network
namespace (veth pair made by the test), while the same line with credentials is reachable there
and answers 401 without them (so the reachability check can fail). A non-loopback address without
credentials is refused with one line. Every Flower command in deploy/ and the README goes through
`leadsync flower`.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shlex
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.ops import DEPLOY, REPO, Spawned, leadsync_bin, wait_for
from worker.base.errors import ConfigError
from worker.cli.flower_cmd import flower_argv
from worker.demo.embedded_redis import free_port

pytestmark = pytest.mark.redis


# --- the policy -------------------------------------------------------------------------------
def _args(address: str | None = None, port: int | None = None,
          extra: list[str] | None = None) -> argparse.Namespace:
    return argparse.Namespace(address=address, port=port, flower_args=extra or [])


def test_without_credentials_flower_binds_loopback_and_says_so() -> None:
    argv, notice = flower_argv(_args(port=5555), {})
    assert argv[-4:] == ["worker", "flower", "--address=127.0.0.1", "--port=5555"]
    assert "FLOWER_BASIC_AUTH is not set" in notice and "127.0.0.1 only" in notice
    argv, _ = flower_argv(_args(address="::1"), {})
    assert "--address=::1" in argv


@pytest.mark.parametrize("env_or_arg", [{"FLOWER_ADDRESS": "0.0.0.0"}, "0.0.0.0", "flower.lan"])
def test_without_credentials_a_network_address_is_refused(env_or_arg: object) -> None:
    env = env_or_arg if isinstance(env_or_arg, dict) else {}
    address = env_or_arg if isinstance(env_or_arg, str) else None
    with pytest.raises(ConfigError, match="FLOWER_BASIC_AUTH is not set: refusing to serve"):
        flower_argv(_args(address=address), env)


def test_with_credentials_flower_runs_as_asked() -> None:
    argv, notice = flower_argv(_args(), {"FLOWER_BASIC_AUTH": "ops:pw"})
    assert notice == "" and not any(a.startswith("--address") for a in argv)
    argv, _ = flower_argv(_args(address="0.0.0.0", extra=["--url_prefix=f"]),
                          {"FLOWER_BASIC_AUTH": "ops:pw,two:pw2"})
    assert argv[-2:] == ["--address=0.0.0.0", "--url_prefix=f"]


@pytest.mark.parametrize("env", [{"FLOWER_BASIC_AUTH": "admin"}, {"FLOWER_BASIC_AUTH": "a:"}])
def test_malformed_credentials_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="FLOWER_BASIC_AUTH: expected user:password"):
        flower_argv(_args(), env)


def test_credentials_as_arguments_are_refused() -> None:
    with pytest.raises(ConfigError, match="not as an argument"):
        flower_argv(_args(extra=["--basic-auth=a:b"]), {})


# --- every Flower command the project hands out ------------------------------------------------
def _flower_commands() -> list[tuple[str, str]]:
    found = []
    for path in [REPO / "Procfile", REPO / "README.md", *sorted(DEPLOY.rglob("*"))]:
        if not path.is_file():
            continue
        fenced = False
        for line in path.read_text().splitlines():
            if line.startswith("```"):
                fenced = not fenced
            # Comments in deploy files, prose in the README: only commands count.
            if path.name == "README.md" and not fenced:
                continue
            if line.lstrip().startswith("#") and path.name != "README.md":
                continue
            if re.search(r"celery\W+(-A\W+\w+\W+)?flower|leadsync\W+flower", line):
                found.append((path.name, line.strip()))
    return found


def test_every_flower_command_in_procfile_deploy_and_readme_is_leadsync_flower() -> None:
    commands = _flower_commands()
    assert any(name == "Procfile" for name, _ in commands)
    assert any(name == "README.md" for name, _ in commands)
    for name, line in commands:
        assert not re.search(r"celery\W+-A\W+worker\W+flower", line), f"{name}: {line}"


# --- a real process ---------------------------------------------------------------------------
def _procfile_flower() -> list[str]:
    for line in (REPO / "Procfile").read_text().splitlines():
        if line.startswith("flower:"):
            return shlex.split(line.partition(":")[2])
    raise AssertionError("no flower line in the Procfile")


def _listening(pid: int) -> set[str]:
    """Local addresses of the TCP sockets `pid` listens on, as 'ip:port'."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for row in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            hex_ip, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_ip)
            # /proc prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(f"{socket.inet_ntop(family, raw)}:{int(hex_port, 16)}")
    return found


@pytest.fixture
def test_host() -> Iterator[tuple[str, str]]:
    """A network namespace joined to this one by a veth pair: (namespace, our side's address).

    Traffic stays on the pair this test made; nothing leaves the machine."""
    if os.geteuid() != 0:
        pytest.skip("creating a network namespace needs root (CI runs as root)")
    tag = f"lsf{os.getpid() % 100000}"
    ns, ours, theirs = f"{tag}ns", f"{tag}a", f"{tag}b"
    subnet = 64 + os.getpid() % 64
    host_ip, peer_ip = f"10.231.{subnet}.1", f"10.231.{subnet}.2"
    steps = [
        ["ip", "netns", "add", ns],
        ["ip", "link", "add", ours, "type", "veth", "peer", "name", theirs],
        ["ip", "link", "set", theirs, "netns", ns],
        ["ip", "addr", "add", f"{host_ip}/30", "dev", ours],
        ["ip", "link", "set", ours, "up"],
        ["ip", "netns", "exec", ns, "ip", "addr", "add", f"{peer_ip}/30", "dev", theirs],
        ["ip", "netns", "exec", ns, "ip", "link", "set", theirs, "up"],
    ]
    try:
        for step in steps:
            subprocess.run(step, check=True, capture_output=True, timeout=20)
        yield ns, host_ip
    finally:
        subprocess.run(["ip", "link", "del", ours], capture_output=True, timeout=20)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)


PROBE = """
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1], timeout=3)
    print("200")
except urllib.error.HTTPError as exc:
    print(exc.code)
except OSError as exc:
    print("unreachable", type(exc).__name__)
"""


def _from_test_host(ns: str, url: str) -> str:
    """GET `url` from inside the test host's namespace: a status code or 'unreachable ...'."""
    result = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", PROBE, url],
                            capture_output=True, text=True, timeout=30)
    return result.stdout.strip() or result.stderr.strip()


def _serving(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthcheck", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _flower_env(ops_env: dict[str, str], port: int) -> dict[str, str]:
    bin_dir = str(Path(leadsync_bin("leadsync")).parent)  # the Procfile names bare `leadsync`
    return {**ops_env, "FLOWER_PORT": str(port),
            "PATH": f"{bin_dir}{os.pathsep}{ops_env.get('PATH', '')}"}


def test_procfile_flower_without_credentials_is_loopback_only(
    ops_env: dict[str, str], spawned: Spawned, test_host: tuple[str, str]
) -> None:
    ns, host_ip = test_host
    port = free_port()
    proc = spawned.start("flower", _procfile_flower(), _flower_env(ops_env, port), cwd=REPO)
    wait_for(lambda: _serving(port), 60, "the Procfile's Flower on 127.0.0.1")

    assert _listening(proc.pid) == {f"127.0.0.1:{port}"}
    assert _from_test_host(ns, f"http://{host_ip}:{port}/api/tasks").startswith("unreachable")
    assert "FLOWER_BASIC_AUTH is not set: Flower listens on 127.0.0.1 only" in spawned.log(
        "flower")


def test_procfile_flower_with_credentials_serves_the_network_behind_auth(
    ops_env: dict[str, str], spawned: Spawned, test_host: tuple[str, str]
) -> None:
    ns, host_ip = test_host
    port = free_port()
    env = {**_flower_env(ops_env, port), "FLOWER_BASIC_AUTH": "ops:exposure-pass"}
    proc = spawned.start("flower", _procfile_flower(), env, cwd=REPO)
    wait_for(lambda: _serving(port), 60, "the Procfile's Flower with credentials")

    assert _listening(proc.pid) & {f"0.0.0.0:{port}", f":::{port}"}
    assert _from_test_host(ns, f"http://{host_ip}:{port}/api/tasks") == "401"
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/tasks", headers={
        "Authorization": "Basic " + base64.b64encode(b"ops:exposure-pass").decode()})
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.status == 200


def test_a_network_address_without_credentials_exits_with_one_line(
    ops_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**_flower_env(ops_env, free_port()), "FLOWER_ADDRESS": "0.0.0.0"}
    result = subprocess.run(_procfile_flower(), env=env, capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 3
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("leadsync: FLOWER_BASIC_AUTH is not set: refusing to serve "
                                    "Flower on 0.0.0.0 without credentials")
