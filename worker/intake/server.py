"""Run the intake under uvicorn (httptools parser, uvloop loop, no access log by default).

`build()` is the app factory uvicorn imports in each worker process (`--workers N`), so every
process builds its own Account (worker/account.py) from the environment; logging goes through
worker.base.log (scrubbed), never uvicorn's own handlers.
"""

from __future__ import annotations

import logging

from starlette.applications import Starlette

from worker.account import Account
from worker.base.log import configure_logging
from worker.base.settings import Settings
from worker.intake.app import create_app

APP_FACTORY = "worker.intake.server:build"


class _NoColor(logging.Filter):
    """uvicorn adds a `color_message` extra (ANSI codes); our formatters print extras."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.pop("color_message", None)
        return True


def _logging(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NoColor) for f in logger.filters):
            logger.addFilter(_NoColor())


def build() -> Starlette:
    account = Account.current()
    _logging(account.settings)
    return create_app(account, account.ledger)


def serve(settings: Settings, *, host: str, port: int, workers: int = 1,
          access_log: bool = False) -> None:
    """Blocks until SIGINT/SIGTERM; in-flight requests finish first (uvicorn's graceful exit)."""
    import uvicorn

    _logging(settings)
    uvicorn.run(APP_FACTORY, factory=True, host=host, port=port, workers=workers,
                loop="uvloop", http="httptools", access_log=access_log, log_config=None,
                server_header=False, timeout_graceful_shutdown=20, proxy_headers=False)
