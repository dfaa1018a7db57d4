"""A failure outside every classified path must not acknowledge a lead away.

Celery acknowledges a task that raised (`task_acks_on_failure_or_timeout`), so `sync_lead`
keeps such a lead as a dead letter (reason `unexpected`, replayable), and when even that cannot
be written it hands the message back with `Reject(requeue=True)`.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis
from celery.exceptions import Reject

import worker.delivery.run
import worker.tasks.leads as tasks
from tests.fixtures.delivery import DeliveryStack
from worker.account import Account
from worker.base.settings import get_settings
from worker.delivery.run import Delivery
from worker.leads.lead import parse_lead


@pytest.fixture
def stack(delivery_stack: Any) -> DeliveryStack:
    built: DeliveryStack = delivery_stack()
    return built


@pytest.fixture
def task_delivery(stack: DeliveryStack, monkeypatch: pytest.MonkeyPatch) -> Delivery:
    """The Delivery the task itself uses: the process's Account, built from the environment."""
    for name, value in stack.env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    delivery = Account.current().delivery()
    assert tasks.Account.current().delivery() is delivery  # one per thread, built once
    return delivery


def boom(*_args: Any, **_kwargs: Any) -> str:
    raise RuntimeError("a bug nobody foresaw")


def test_a_bug_before_the_ledger_step_keeps_the_lead_as_a_replayable_dead_letter(
    stack: DeliveryStack, redis_client: redis.Redis, task_delivery: Delivery,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    account = Account(stack.settings, redis_client)
    lead = parse_lead({"email": "bug@example.com", "first_name": "Ada"})
    monkeypatch.setattr(worker.delivery.run, "encode_message", boom)
    answer = tasks.sync_lead.run(lead.to_json_dict())
    assert answer == {"lead_id": lead.lead_id, "status": "dead_lettered"}
    letter = account.dead_letters.get(lead.lead_id)
    assert letter.reason_code == "unexpected" and letter.replayable
    assert "RuntimeError" in letter.reason and "bug@example.com" not in letter.reason
    monkeypatch.undo()
    account.dead_letters.replay(lead.lead_id)  # and it can be sent again


def test_when_not_even_the_dead_letter_can_be_written_the_message_goes_back(
    task_delivery: Delivery, monkeypatch: pytest.MonkeyPatch,
) -> None:
    lead = parse_lead({"email": "bug2@example.com"})
    monkeypatch.setattr(worker.delivery.run, "encode_message", boom)
    monkeypatch.setattr(task_delivery.dead_letters, "add", boom)
    with pytest.raises(Reject) as caught:
        tasks.sync_lead.run(lead.to_json_dict())
    assert caught.value.requeue is True
