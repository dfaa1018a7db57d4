"""Make `celery worker` and `celery beat` log through worker.base.log (scrubbed, text or JSON).

Celery configures logging itself unless a receiver is connected to `setup_logging`; connecting
one here hands the whole job to `configure_logging`, so every line a worker or beat process
writes (ours, Celery's, kombu's) passes the scrubber and honours LEADSYNC_LOG_LEVEL and
LEADSYNC_LOG_FORMAT. Prefork children inherit the configuration when they fork.
"""

from __future__ import annotations

from typing import Any

from celery.signals import setup_logging

from worker.base.log import configure_logging
from worker.base.settings import get_settings


@setup_logging.connect
def configure_celery_logging(**_: Any) -> None:
    """Replace Celery's logging set-up with ours (level and format from settings)."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
