"""Stand-in for `celery -A worker` while worker/tasks/leads.py (another issue) has not landed:
the very same make_app(), only without the missing task module in `include`."""

from __future__ import annotations

from worker.celery import make_app
from worker.settings import get_settings

app = make_app(get_settings())
app.conf.include = ["worker.tasks.tokens"]
