"""The demo's children: the in-process sandbox, the real device authorization, and stopping
a child's whole process group.

Split from worker.demo.demo (which re-exports these names); also used by the e2e fixtures and the
fleet benchmark.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from worker.base.errors import LeadsyncError

DEMO_CLIENT_ID = "leadsync-demo"
DEMO_CLIENT_SECRET = "demo-secret-not-for-production"  # sandbox-only credential


def start_sandbox(redis_url: str, *, lifetime_s: float = 20.0,
                  rate_limit_per_s: float = 4.0) -> tuple[Any, dict[str, str]]:
    """The sandbox in this process (auto-approve, rotating refresh tokens) and the environment
    that points leadsync children at it and at `redis_url`."""
    try:
        from worker.sandbox import SandboxConfig, SandboxServer
    except ImportError:
        raise LeadsyncError("the sandbox (worker.sandbox) is not available in this install") \
            from None
    server = SandboxServer(SandboxConfig(
        client_id=DEMO_CLIENT_ID, client_secret=DEMO_CLIENT_SECRET, refresh_tokens="rotating",
        access_token_lifetime_s=lifetime_s, rate_limit_per_s=rate_limit_per_s,
        auto_approve=True,
    )).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADSYNC_")}
    env.update(server.settings_env())
    env.update({
        "LEADSYNC_REDIS_URL": redis_url,
        "LEADSYNC_CLIENT_ID": DEMO_CLIENT_ID,
        "LEADSYNC_CLIENT_SECRET": DEMO_CLIENT_SECRET,
        # Refresh once half the short lifetime is gone, checked every 2 s: several refreshes
        # happen during a run, each through the real locked refresher on beat.
        "LEADSYNC_REFRESH_MARGIN_RATIO": "0.5",
        "LEADSYNC_REFRESH_INTERVAL_S": "2",
        # Stay just under the sandbox's limit, as the default 3.7 does for the real 4/s.
        "LEADSYNC_RATE_LIMIT_PER_S": f"{rate_limit_per_s * 0.925:g}",
        "PYTHONUNBUFFERED": "1",
    })
    return server, env


def authorize_device(env: dict[str, str], log_path: Path) -> None:
    """The real `leadsync auth device` command, approved by the sandbox without a person."""
    with log_path.open("wb") as log:
        code = subprocess.call([_bin("leadsync"), "auth", "device"], env=env, stdout=log,
                               stderr=subprocess.STDOUT, timeout=90, start_new_session=True)
    if code != 0:
        raise LeadsyncError(f"`leadsync auth device` failed (exit {code}); see {log_path}")


def _settings_overrides(env: dict[str, str]) -> dict[str, Any]:
    """The demo's LEADSYNC_* variables as Settings keyword arguments."""
    return {k.removeprefix("LEADSYNC_").lower(): v for k, v in env.items()
            if k.startswith("LEADSYNC_")}


def _bin(name: str) -> str:
    """The console script next to this interpreter (the venv's), else on PATH."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


def _terminate_group(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """TERM the child's whole process group (prefork children too), KILL what lingers."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; make sure no pool process of its group is left either.
        deadline = time.monotonic() + wait_s
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _group_alive(proc.pid):
            break


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - a foreign process reused the id
        return False
    return True
