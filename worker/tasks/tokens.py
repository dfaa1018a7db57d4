"""`leadsync.refresh_token`: the beat's (and a 401's) way into the single locked refresher."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from worker.account import Account
from worker.base.errors import TokenKeyError
from worker.base.names import REFRESH_TOKEN


@shared_task(name=REFRESH_TOKEN, ignore_result=True)
def refresh_token(seen_generation: int | None = None) -> dict[str, Any]:
    """Refresh when due (beat) or when `seen_generation` was refused with a 401."""
    try:
        outcome = Account.current().refresh(seen_generation=seen_generation)
    except TokenKeyError:  # logged once per incident by the token store; nothing to refresh
        return {"action": "token_key_invalid", "generation": None}
    return {"action": outcome.action, "generation": outcome.generation}
