"""A refresh asked for by `request_refresh` (no Celery app: a plain LPUSH) runs on a real worker.

The message is the one worker.leads.wire builds; only a real `celery -A worker worker` consuming the
control queue shows that Celery accepts it as a `leadsync.refresh_token` call.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import redis

from tests.fixtures.delivery import Fleet
from tests.fixtures.ops import wait_for
from worker.account import Account
from worker.auth.access import current_access_token, request_refresh
from worker.base.names import CONTROL_QUEUE, REFRESH_TOKEN

pytestmark = [pytest.mark.redis]


def test_a_requested_refresh_is_run_by_a_real_worker(
    fleet: Callable[..., Fleet], redis_client: redis.Redis
) -> None:
    f = fleet()
    settings = f.stack.settings
    tokens = Account(settings, redis_client).tokens
    refused = current_access_token(tokens)
    request_refresh(tokens, refused.generation)
    queued = [json.loads(raw) for raw in redis_client.lrange(CONTROL_QUEUE, 0, -1)]
    assert [m["headers"]["task"] for m in queued] == [REFRESH_TOKEN]
    assert json.loads(queued[0]["body"])[:2] == [[], {"seen_generation": refused.generation}]

    f.start_worker("control", concurrency=1, queues=CONTROL_QUEUE)
    store = tokens
    wait_for(lambda: store.generation() > refused.generation, 60,
             "the worker to store a token newer than the refused one")
    assert store.generation() == refused.generation + 1  # one request, one refresh
    assert f.stack.sandbox.stats()["refreshes"] == 1
    assert current_access_token(tokens).value != refused.value
    wait_for(lambda: redis_client.llen(CONTROL_QUEUE) == 0, 30, "the control queue to drain")
