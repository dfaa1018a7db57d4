"""SandboxServer: the local Constant Contact, served from a background thread.

    with SandboxServer(SandboxConfig(auto_approve=True)).start() as sandbox:
        env = sandbox.settings_env()   # LEADSYNC_* pointing a worker at it
        sandbox.advance_clock(86_400)  # tokens expire without waiting

One asyncio loop serves every connection; handlers run under the state lock, so the Python
methods below are safe to call from any thread while it serves.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from types import TracebackType
from typing import Any

from worker.base.errors import ConfigError
from worker.sandbox import control
from worker.sandbox.api import API
from worker.sandbox.config import SandboxConfig
from worker.sandbox.faults import ENDING_FIELDS, TIMEOUT_DELAY_S, parse_faults
from worker.sandbox.http import DROP, Reply, Request, api_error, json_reply, oauth_error
from worker.sandbox.oauth import OAuthEndpoints
from worker.sandbox.state import SandboxState
from worker.sandbox.store import resource
from worker.sandbox.transport import HttpProtocol

log = logging.getLogger(__name__)

AUTHZ = "/oauth2/default/v1"
KEYS_PATH = "/oauth2/aus1lm3ry9mF7x2Ja0h8/v1/keys"
TICK_S = 0.05


class SandboxServer:
    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.state = SandboxState(self.config)
        self.api = API(self.state)
        self.oauth = OAuthEndpoints(self.state)
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[HttpProtocol] = set()
        self._error: BaseException | None = None

    # --- life cycle -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host = self.config.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return f"http://{host}:{self.port}"

    def start(self) -> SandboxServer:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True,
                                        name="leadsync-sandbox")
        self._thread.start()
        ready.wait(15)
        if self._error is not None:
            self._thread.join(5)
            raise ConfigError(f"sandbox cannot listen on {self.config.host}:{self.config.port}: "
                              f"{getattr(self._error, 'strerror', None) or self._error}")
        return self

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            server = loop.run_until_complete(loop.create_server(
                lambda: HttpProtocol(self.dispatch, self._connections),
                self.config.host, self.config.port, reuse_address=True, backlog=512))
        except OSError as exc:
            self._error = exc
            loop.close()
            ready.set()
            return
        self.port = server.sockets[0].getsockname()[1]
        loop.call_later(TICK_S, self._tick)
        ready.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            for connection in list(self._connections):
                connection.close()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    def _tick(self) -> None:
        with self.state.lock:
            self.state.activities.tick()
        if self._loop is not None and self._loop.is_running():
            self._loop.call_later(TICK_S, self._tick)

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
        self._thread = None

    def __enter__(self) -> SandboxServer:
        return self if self._thread is not None else self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def settings_env(self) -> dict[str, str]:
        """The LEADSYNC_* variables that point a worker at this sandbox."""
        authz = f"{self.url}{AUTHZ}"
        env = {
            "LEADSYNC_API_BASE_URL": f"{self.url}/v3",
            "LEADSYNC_AUTHORIZE_URL": f"{authz}/authorize",
            "LEADSYNC_TOKEN_URL": f"{authz}/token",
            "LEADSYNC_DEVICE_AUTHORIZATION_URL": f"{authz}/device/authorize",
            "LEADSYNC_REVOKE_URL": f"{authz}/revoke",
            "LEADSYNC_JWKS_URL": f"{self.url}{KEYS_PATH}",
            "LEADSYNC_CLIENT_ID": self.config.client_id,
            "LEADSYNC_CLIENT_SECRET": self.config.client_secret,
            "LEADSYNC_LIST_IDS": self.state.store.default_list_id,
        }
        defaults = SandboxConfig()
        if self.config.issuer != defaults.issuer:
            env["LEADSYNC_TOKEN_ISSUER"] = self.config.issuer
        if self.config.audience != defaults.audience:
            env["LEADSYNC_TOKEN_AUDIENCE"] = self.config.audience
        return env

    # --- dispatch ---------------------------------------------------------------------------
    def dispatch(self, request: Request) -> Reply:
        with self.state.lock:
            try:
                reply = self._dispatch(request)
            except Exception:
                log.exception("sandbox handler failed on %s %s", request.method, request.path)
                reply = api_error(500, "server_error", "An internal server error occurred.")
            if not reply.drop:
                self.state.stats.requests_by_status[reply.status] += 1
            return reply

    def _dispatch(self, request: Request) -> Reply:
        path = request.path
        if path.startswith("/_sandbox/"):
            return control.handle(self, request)
        is_api = path.startswith("/v3/")
        if not (is_api or path.startswith("/oauth2/") or path == "/activate"):
            return api_error(404, "not_found", "The requested resource was not found.")
        state = self.state
        faults = state.faults
        if state.dice.hit(faults.drop_rate):
            state.stats.faults_injected["dropped"] += 1
            return DROP
        if state.dice.hit(faults.fail_rate):
            status = state.dice.server_error()
            state.stats.faults_injected[str(status)] += 1
            reply = _server_error(status, is_api)
        else:
            reply = self.api.handle(request) if is_api else self._oauth(request)
        reply.delay_s = faults.latency_ms / 1000
        if state.dice.hit(faults.timeout_rate):
            state.stats.faults_injected["timeout"] += 1
            reply.delay_s = max(reply.delay_s, TIMEOUT_DELAY_S)
        return reply

    def _oauth(self, request: Request) -> Reply:
        path = request.path.rstrip("/")
        oauth = self.oauth
        if path == f"{AUTHZ}/token":
            return oauth.token(request)
        if path == f"{AUTHZ}/authorize":
            return oauth.authorize(request)
        if path == f"{AUTHZ}/authorize/decision":
            return oauth.decision(request)
        if path == f"{AUTHZ}/device/authorize":
            return oauth.device_authorize(request, self.url)
        if path == f"{AUTHZ}/revoke":
            return oauth.revoke(request)
        if path == KEYS_PATH:
            return oauth.jwks(request)
        if path == "/activate":
            return oauth.activate(request)
        return json_reply(404, {"errorCode": "E0000022",
                                "errorSummary": "The endpoint does not support the provided "
                                "HTTP method"})

    # --- control (the same operations as /_sandbox/*) ---------------------------------------
    def stats(self) -> dict[str, Any]:
        with self.state.lock:
            store = self.state.store
            active = store.active()
            stats = self.state.stats.as_dict(active, len(store.contacts) - active,
                                             self.state.tokens.latest_generation)
            stats["refresh_grace_reuses"] = self.state.tokens.grace_reuses
            return stats

    def contacts(self) -> list[dict[str, Any]]:
        """Every contact, soft-deleted ones included, with all subresources."""
        with self.state.lock:
            return [resource(c, None) for c in self.state.store.contacts.values()]

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        parsed = parse_faults(changes)
        with self.state.lock:
            state, faults = self.state, self.state.faults
            for name in ("fail_rate", "latency_ms", "drop_rate", "timeout_rate",
                         "conflict_window_ms"):
                if name in parsed:
                    setattr(faults, name, parsed[name])
            for name in ("throttle_burst", *ENDING_FIELDS):  # counts: the next N ...
                if name in parsed:
                    setattr(faults, name, int(parsed[name]))
            if "daily_quota" in parsed:
                state.quota.per_day = int(parsed["daily_quota"])
            if "quota_used" in parsed:
                state.quota.set_used(self.config.client_id, state.clock.now(),
                                     int(parsed["quota_used"]))
            if "rate_limit_per_s" in parsed:
                state.limiter.per_s = parsed["rate_limit_per_s"]
            if "token_rate_limit_per_s" in parsed:
                state.token_limiter.per_s = parsed["token_rate_limit_per_s"]
            if "refresh_grace_s" in parsed:  # applies to rotations from now on
                self.config.refresh_grace_s = parsed["refresh_grace_s"]
            if changes.get("revoke_refresh_tokens"):
                state.tokens.revoke_refresh_tokens(state.clock.now())
            return {**faults.as_dict(), "daily_quota": state.quota.per_day,
                    "quota_used": state.quota.used(self.config.client_id, state.clock.now()),
                    "rate_limit_per_s": state.limiter.per_s,
                    "token_rate_limit_per_s": state.token_limiter.per_s,
                    "refresh_grace_s": self.config.refresh_grace_s}

    def revoke_refresh_tokens(self) -> int:
        with self.state.lock:
            return self.state.tokens.revoke_refresh_tokens(self.state.clock.now())

    def advance_clock(self, seconds: float) -> float:
        with self.state.lock:
            now = self.state.clock.advance(seconds)
            self.state.activities.tick()
            return now

    def rotate_keys(self) -> list[str]:
        with self.state.lock:
            return self.state.keys.rotate()

    def approve_device(self, user_code: str | None = None) -> list[str]:
        with self.state.lock:
            return self.state.tokens.decide_device(user_code, True, self.state.clock.now())

    def deny_device(self, user_code: str | None = None) -> list[str]:
        with self.state.lock:
            return self.state.tokens.decide_device(user_code, False, self.state.clock.now())

    def reset(self) -> None:
        with self.state.lock:
            self.state.reset_data()


def _server_error(status: int, is_api: bool) -> Reply:
    if is_api:
        if status == 503:
            return api_error(503, "service_unavailable", "The service is temporarily "
                             "unavailable. Try again later.")
        return api_error(500, "server_error", "An internal server error occurred.")
    error = "temporarily_unavailable" if status == 503 else "server_error"
    return oauth_error(status, error, "The authorization server encountered an unexpected "
                       "condition.")
