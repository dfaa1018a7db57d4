"""Run the intake under uvicorn (httptools parser, uvloop loop, no access log by default).

`build()` is the app factory uvicorn imports in each worker process (`--workers N`), so every
process reads the settings itself; logging goes through worker.log (scrubbed), never uvicorn's
own handlers.
"""

from __future__ import annotations

from starlette.applications import Starlette

from worker.intake.app import create_app
from worker.log import configure_logging
from worker.settings import Settings, get_settings

APP_FACTORY = "worker.intake.server:build"


def build() -> Starlette:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)


def serve(settings: Settings, *, host: str, port: int, workers: int = 1,
          access_log: bool = False) -> None:
    """Blocks until SIGINT/SIGTERM; in-flight requests finish first (uvicorn's graceful exit)."""
    import uvicorn

    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(APP_FACTORY, factory=True, host=host, port=port, workers=workers,
                loop="uvloop", http="httptools", access_log=access_log, log_config=None,
                server_header=False, timeout_graceful_shutdown=20, proxy_headers=False)
