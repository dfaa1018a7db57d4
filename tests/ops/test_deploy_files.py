"""Every deploy file is parsed and every command, option, module, variable and file it names
is checked against the code, so deploy/ and the Procfile cannot drift from leadsync."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from tests.fixtures.ops import (
    DEPLOY,
    REPO,
    check_celery_command,
    check_command,
    check_leadsync_command,
    flower_env_names,
    settings_fields,
)
from worker.demo.embedded_redis import find_redis_server, free_port

DEPLOY_FILES = [REPO / "Procfile", *sorted(p for p in DEPLOY.rglob("*") if p.is_file())]


def read_procfile() -> dict[str, str]:
    entries = {}
    for line in (REPO / "Procfile").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, _, command = line.partition(":")
        assert re.fullmatch(r"[A-Za-z0-9_-]+", name), f"bad Procfile process name {name!r}"
        entries[name] = command.strip()
    return entries


def systemd_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """INI-style unit: repeated keys allowed (systemd appends them), `#` comments."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, f"{path.name}: key outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not key=value: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def systemd_argv(command: str) -> list[str]:
    """ExecStart as the program sees it: `%%` is systemd's escape for a literal `%`."""
    argv = shlex.split(command.replace("%%", "\x00"))
    return [arg.replace("%i", "1").replace("\x00", "%") for arg in argv]


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = "\n".join(lines).replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        if line.strip():
            op, _, rest = line.strip().partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def k8s_docs() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return list(doc["spec"]["template"]["spec"]["containers"])


# --- Procfile -------------------------------------------------------------------------------
def test_procfile_runs_worker_beat_and_flower_with_the_real_celery_commands() -> None:
    entries = read_procfile()
    assert set(entries) == {"worker", "beat", "flower", "intake"}
    assert check_leadsync_command(shlex.split(entries.pop("intake"))).command == "intake"
    for name, command in entries.items():
        role, params = check_celery_command(shlex.split(command))
        assert role == name
        if role == "worker":
            assert params["task_events"] is True, "worker needs -E so Flower shows tasks"
            assert not params.get("queues"), "no -Q: the worker must consume both queues"


def test_worker_without_q_consumes_both_queues() -> None:
    import worker.celery

    names = {q.name for q in worker.celery.app.conf.task_queues}
    assert names == {"leads", "leadsync-control"}


# --- Dockerfile -----------------------------------------------------------------------------
def test_dockerfile_is_slim_non_root_with_a_real_healthcheck() -> None:
    steps = dockerfile_instructions()
    ops = [op for op, _ in steps]
    assert steps[0] == ("FROM", "python:3.11-slim")
    user = [rest for op, rest in steps if op == "USER"]
    assert user and user[-1] not in ("root", "0")
    run = " ".join(rest for op, rest in steps if op == "RUN")
    assert "useradd" in run and user[-1] in run, "the USER must be created in the image"
    assert ops.index("USER") > max(i for i, op in enumerate(ops) if op == "RUN")
    for op, rest in steps:
        if op == "COPY":
            *sources, _dest = rest.split()
            for src in sources:
                assert (REPO / src).exists(), f"COPY {src}: no such file in the repository"
    health = next(rest for op, rest in steps if op == "HEALTHCHECK")
    health_cmd = json.loads(health.split(" CMD ", 1)[1])
    args = check_leadsync_command(health_cmd)
    assert args.command == "health"
    cmd = json.loads(next(rest for op, rest in steps if op == "CMD"))
    assert check_celery_command(cmd)[0] == "worker"


# --- docker-compose -------------------------------------------------------------------------
def test_compose_services_commands_env_and_files_match_the_code() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"redis", "worker", "beat", "flower", "intake"}
    for name in ("worker", "beat", "flower", "intake"):
        service = services[name]
        if name == "intake":
            args = check_leadsync_command(service["command"])
            assert args.command == "intake" and args.host == "0.0.0.0"
            assert any(p.endswith(f":{args.port}") for p in service["ports"])
            probe = service["healthcheck"]["test"][-1]
            assert f"127.0.0.1:{args.port}/readyz" in probe
        else:
            assert check_celery_command(service["command"])[0] == name
        build = service["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()
        for key in service.get("environment", {}):
            if key.startswith("LEADSYNC_"):
                assert key in settings_fields(), f"{name}: {key} is not a Settings field"
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD"
        if test[1] == "leadsync":
            assert check_leadsync_command(test[1:]).command == "health"
    assert services["beat"]["deploy"]["replicas"] == 1
    assert "FLOWER_BASIC_AUTH" in services["flower"]["environment"]
    # Redis loads the recommended config from this folder.
    mounts = [v.split(":") for v in services["redis"]["volumes"]]
    conf = next(m for m in mounts if m[0].endswith("redis.conf"))
    assert (DEPLOY / conf[0]).resolve() == (DEPLOY / "redis.conf").resolve()
    assert conf[1] in services["redis"]["command"]


def test_worker_healthcheck_pings_the_same_node_name_the_worker_uses() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    worker = compose["services"]["worker"]
    _, params = check_celery_command(worker["command"])
    probe = check_leadsync_command(worker["healthcheck"]["test"][1:])
    from celery.utils.nodenames import host_format

    assert host_format(probe.node) == params["hostname"]


# --- redis.conf -----------------------------------------------------------------------------
def test_redis_conf_is_accepted_by_a_real_redis_and_keeps_every_lead(tmp_path: Path) -> None:
    """Start the real redis-server on the file (only port/dir/bind overridden) and ask it."""
    port = free_port()
    proc = subprocess.Popen(
        [find_redis_server(), str(DEPLOY / "redis.conf"), "--port", str(port),
         "--dir", str(tmp_path), "--bind", "127.0.0.1", "--maxmemory", "64mb"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    try:
        from tests.fixtures.ops import wait_for

        def up() -> bool:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_for(up, 10, "redis-server on deploy/redis.conf")
        config = client.config_get("*")
        assert config["appendonly"] == "yes"
        assert config["appendfsync"] in ("always", "everysec")
        assert config["maxmemory-policy"] == "noeviction"
        # What workers and `leadsync health` check: the shipped file passes without opt-out.
        from worker.base.redis_check import check_redis

        assert check_redis(client, allow_volatile=False).state == "ok"
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()


# --- systemd --------------------------------------------------------------------------------
def test_systemd_units_templated_worker_single_beat_and_flower() -> None:
    units = {p.name: systemd_unit(p) for p in (DEPLOY / "systemd").glob("*.service")}
    assert set(units) == {"leadsync-worker@.service", "leadsync-beat.service",
                          "leadsync-flower.service", "leadsync-intake.service"}
    roles = {}
    for name, unit in units.items():
        assert {"Unit", "Service", "Install"} <= set(unit), name
        (exec_start,) = unit["Service"]["ExecStart"]
        argv = systemd_argv(exec_start)
        assert unit["Service"]["User"] != ["root"]
        if Path(argv[0]).name == "leadsync" and check_leadsync_command(argv).command == "intake":
            continue
        role, params = check_celery_command(argv)
        roles[name] = role
        if role == "worker":
            assert params["task_events"] is True and not params.get("queues")
            assert "%i" in exec_start, "each template instance needs its own node name"
    assert roles == {"leadsync-worker@.service": "worker", "leadsync-beat.service": "beat",
                     "leadsync-flower.service": "flower"}


# --- Kubernetes -----------------------------------------------------------------------------
def test_k8s_manifests_match_the_code() -> None:
    docs = k8s_docs()
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    secret = next(d for d in docs if d["kind"] == "Secret")
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == {"leadsync-worker", "leadsync-beat", "leadsync-flower",
                                "leadsync-intake"}
    assert {("Service", "leadsync-flower"), ("Service", "leadsync-intake")} <= kinds
    for key in secret["stringData"]:
        assert key in settings_fields() | flower_env_names(), f"Secret key {key} is read by nothing"

    beat = deployments["leadsync-beat"]["spec"]
    assert beat["replicas"] == 1 and beat["strategy"]["type"] == "Recreate"

    for name, deployment in deployments.items():
        role = name.removeprefix("leadsync-")
        (container,) = containers(deployment)
        if role == "intake":
            check_intake_container(container)
        else:
            assert check_celery_command(container["command"])[0] == role
        refs = [e["secretRef"]["name"] for e in container.get("envFrom", [])]
        assert refs == [secret["metadata"]["name"]]
        for env in container.get("env", []):
            if env["name"].startswith("LEADSYNC_"):
                assert env["name"] in settings_fields()
        for probe in ("livenessProbe", "readinessProbe"):
            spec = container[probe]
            if role == "intake":
                continue  # check_intake_container checked them against the app's routes
            if "exec" in spec:
                assert check_leadsync_command(spec["exec"]["command"]).command == "health"
            else:
                from flower.urls import handlers

                patterns = [h.regex.pattern if hasattr(h, "regex") else h[0] for h in handlers]
                path = spec["httpGet"]["path"]
                assert any(re.fullmatch(p.rstrip("$"), path) for p in patterns), path
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()

    for service in (d for d in docs if d["kind"] == "Service"):
        target = deployments[service["metadata"]["name"]]
        labels = target["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        (container,) = containers(target)
        ports = {p["name"] for p in container["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports


def check_intake_container(container: dict[str, Any]) -> None:
    """The intake's command parses, it binds all interfaces on its port, and its probes hit
    the app's real /healthz (liveness) and /readyz (readiness: Redis answers)."""
    import redis

    from worker.account import Account
    from worker.base.settings import Settings
    from worker.intake.app import create_app

    args = check_leadsync_command(container["command"])
    assert args.command == "intake" and args.host == "0.0.0.0"
    (port,) = container["ports"]
    assert port["containerPort"] == args.port
    account = Account(Settings(_env_file=None), redis.Redis())  # no connection: routes only
    paths = {route.path for route in create_app(account, account.ledger).routes}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] in paths
        assert container[probe]["httpGet"]["port"] == port["name"]


def test_worker_probes_ping_the_node_name_the_worker_uses() -> None:
    from celery.utils.nodenames import host_format

    worker = next(d for d in k8s_docs() if d["metadata"]["name"] == "leadsync-worker")
    (container,) = containers(worker)
    _, params = check_celery_command(container["command"])
    for probe in ("livenessProbe", "readinessProbe"):
        args = check_leadsync_command(container[probe]["exec"]["command"])
        assert host_format(args.node) == params["hostname"]


# --- every file -----------------------------------------------------------------------------
@pytest.mark.parametrize("path", DEPLOY_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_variable_named_in_a_deploy_file_is_read_by_the_code(path: Path) -> None:
    text = path.read_text()
    for name in set(re.findall(r"\bLEADSYNC_[A-Z0-9_]+", text)):
        assert name in settings_fields(), f"{path.name}: {name} is not a Settings field"
    for name in set(re.findall(r"\bFLOWER_[A-Z0-9_]+", text)):
        assert name in flower_env_names(), f"{path.name}: Flower reads no {name}"
    source = "\n".join(p.read_text() for p in (REPO / "worker").rglob("*.py"))
    for task in set(re.findall(r"\bleadsync\.[a-z]+_[a-z_]+", text)):
        assert f'"{task}"' in source, f"{path.name}: no task named {task} in worker/"


@pytest.mark.parametrize("path", DEPLOY_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_leadsync_command_quoted_in_comments_is_real(path: Path) -> None:
    """Comments tell operators to run `leadsync ...`: those commands must parse too."""
    text = path.read_text()
    quoted = re.findall(r"`(leadsync [^`]+)`", text)
    quoted += re.findall(r"run --rm \w+ (leadsync [a-z -]+?)\s*(?:#|$)", text, re.M)
    for command in quoted:
        check_leadsync_command(shlex.split(command))


def test_every_file_explains_itself() -> None:
    for path in DEPLOY_FILES:
        first = path.read_text().lstrip().splitlines()[0]
        assert first.startswith("#"), f"{path.name} starts without an explaining comment"
    assert check_command(["leadsync", "health", "--no-worker-check"]) == "leadsync"
