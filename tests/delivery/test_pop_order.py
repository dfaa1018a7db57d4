"""The control queue is looked at every CONTROL_EVERY_S while leads flow, not on every pop, and is
never starved: a control message (a token refresh) is taken while leads are still queued, and
an idle worker still wakes for one. Against the private Redis, through the app's own transport.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu import Consumer, Queue

from worker.auth.access import send_refresh_task
from worker.base.names import CONTROL_QUEUE, LEADS_QUEUE, REFRESH_TOKEN, SYNC_LEAD
from worker.base.priority import PRIORITY_STEPS, list_for, queue_lists
from worker.broker.pop_order import CONTROL_EVERY_S, PopOrder
from worker.celery import make_app
from worker.leads.lead import parse_lead
from worker.leads.wire import encode_message

pytestmark = pytest.mark.redis
CONTROL_LISTS = set(queue_lists(CONTROL_QUEUE))
LEAD_LISTS = set(queue_lists(LEADS_QUEUE))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def chooser(clock: Clock) -> PopOrder:
    return PopOrder(list_for, PRIORITY_STEPS, clock=clock)


# -- the chooser alone ------------------------------------------------------------------------

def test_over_1000_back_to_back_pops_the_control_lists_come_first_a_handful_of_times() -> None:
    clock, first = Clock(), 0
    order = chooser(clock)
    for _ in range(1000):  # a pop a millisecond: one second of leads
        keys, flags = order.next([CONTROL_QUEUE, LEADS_QUEUE], [True, True], after_empty=False)
        assert set(keys) == CONTROL_LISTS | LEAD_LISTS and flags == "1" * 8  # never left out
        first += keys[0] in CONTROL_LISTS
        clock.now += 0.001
    assert first <= 1 + 1.0 / CONTROL_EVERY_S  # 5, where every pop read them first before


def test_the_control_lists_come_first_when_due_and_after_an_empty_pop() -> None:
    clock = Clock()
    order = chooser(clock)
    both = [LEADS_QUEUE, CONTROL_QUEUE]  # kombu's cycle order after a control delivery

    def keys(after_empty: bool = False) -> list[str]:
        return order.next(both, [True, True], after_empty=after_empty)[0]

    due = [list_for(q, step) for step in PRIORITY_STEPS for q in (CONTROL_QUEUE, LEADS_QUEUE)]
    later = [list_for(LEADS_QUEUE, s) for s in PRIORITY_STEPS] + [
        list_for(CONTROL_QUEUE, s) for s in PRIORITY_STEPS]
    assert keys() == due  # the first pop
    assert keys() == later  # leads first, the control lists still read when they are empty
    clock.now += CONTROL_EVERY_S
    assert keys() == due
    assert keys(after_empty=True) == due  # the pop after every queue was found empty
    assert keys() == later


def test_each_list_keeps_its_queues_record_flag_in_either_order() -> None:
    clock = Clock()
    order = chooser(clock)
    # A no_ack consumer on the control queue: its messages must never enter `unacked`.
    for _ in range(2):
        keys, flags = order.next([CONTROL_QUEUE, LEADS_QUEUE], [False, True], after_empty=False)
        assert {k: f for k, f in zip(keys, flags, strict=True)} == {
            **{k: "0" for k in CONTROL_LISTS}, **{k: "1" for k in LEAD_LISTS}}
    assert keys[0] == LEADS_QUEUE  # the second pop: the demoted order


@pytest.mark.parametrize("queues", [[LEADS_QUEUE], [CONTROL_QUEUE], ["replies", LEADS_QUEUE]])
def test_without_both_kinds_of_queue_every_pop_is_kombus_order(queues: list[str]) -> None:
    order = chooser(Clock())
    expected = [list_for(q, s) for s in PRIORITY_STEPS for q in queues]
    for _ in range(3):
        assert order.next(queues, [True] * len(queues), after_empty=False)[0] == expected


# -- a consumer on the app's transport, against Redis -----------------------------------------

def lead_messages(count: int) -> list[str]:
    return [encode_message(parse_lead({"email": f"pop{n}@order.example", "consent": True}))
            for n in range(count)]


def push_leads(client: redis.Redis, count: int) -> None:
    pipe = client.pipeline(transaction=False)
    for message in lead_messages(count):
        pipe.lpush(LEADS_QUEUE, message)
    pipe.execute()


class Worker:
    """The app's transport consuming `leads` and the control queue as a worker does; each
    delivery noted with the task's name and how many leads were still queued."""

    def __init__(self, app: Any, client: redis.Redis, *, control_no_ack: bool = False) -> None:
        self.client = client
        self.received: list[tuple[str, int, bool]] = []  # task, leads queued, in unacked
        self.conn = app.connection_for_read()
        channel = self.conn.default_channel
        self.consumers = [
            Consumer(channel, [Queue(LEADS_QUEUE)], callbacks=[self.on_message],
                     accept=["json"]),
            Consumer(channel, [Queue(CONTROL_QUEUE)], callbacks=[self.on_message],
                     accept=["json"], no_ack=control_no_ack)]
        for consumer in self.consumers:
            consumer.consume()

    def on_message(self, _body: Any, message: Any) -> None:
        self.received.append((message.headers["task"], self.client.llen(LEADS_QUEUE),
                              bool(self.client.hexists("unacked", message.delivery_tag))))
        if not message.acknowledged:
            message.ack()

    def tasks(self) -> Counter[str]:
        return Counter(task for task, _, _ in self.received)

    def drain_until(self, done: Any, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not done() and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                self.conn.drain_events(timeout=1)
        assert done(), f"received {self.tasks()} in {timeout_s} s"

    def go_idle(self) -> None:
        """Every queue empty: the consumer's next poll is the blocking wait in Redis."""
        with pytest.raises(TimeoutError):
            self.conn.drain_events(timeout=0.3)

    def close(self) -> None:
        self.conn.release()


@pytest.fixture
def app(redis_url: str, make_settings: Any) -> Iterator[Any]:
    app = make_app(make_settings(redis_url=redis_url))
    yield app
    app.close()


def test_a_token_refresh_is_taken_while_leads_are_still_queued(
    app: Any, redis_client: redis.Redis
) -> None:
    push_leads(redis_client, 4000)  # far more than the consumer takes in CONTROL_EVERY_S
    worker = Worker(app, redis_client)
    try:
        worker.drain_until(lambda: len(worker.received) >= 20, 30)
        send_refresh_task(redis_client, 1)  # what a worker that got a 401 sends
        worker.drain_until(lambda: worker.tasks()[REFRESH_TOKEN] == 1, 30)
    finally:
        worker.close()
    (queued_then,) = [queued for task, queued, _ in worker.received if task == REFRESH_TOKEN]
    assert queued_then > 0  # taken among the leads, not once they ran out


def test_the_control_lists_are_read_far_fewer_times_than_leads_are_popped(
    app: Any, redis_client: redis.Redis, redis_url: str
) -> None:
    leads = 300
    push_leads(redis_client, leads)
    worker = Worker(app, redis_client)
    monitor = ScriptReads(redis_url)
    try:
        started = time.monotonic()
        worker.drain_until(lambda: len(worker.received) == leads, 60)
        elapsed = time.monotonic() - started
    finally:
        monitor.stop()
        worker.close()
    assert monitor.rpops(LEAD_LISTS) == leads  # one RPOP a lead: priority 0, read first
    control_reads = monitor.rpops(CONTROL_LISTS)
    assert 1 <= control_reads <= 2 + elapsed / CONTROL_EVERY_S, (control_reads, elapsed)
    assert control_reads < leads / 10  # every pop read it before


@pytest.mark.parametrize("last", ["lead", "control"])
def test_an_idle_worker_wakes_for_a_token_refresh(
    app: Any, redis_client: redis.Redis, last: str
) -> None:
    worker = Worker(app, redis_client)
    try:
        # The last delivery sets kombu's cycle, which picks the queue the idle wait watches.
        if last == "lead":
            push_leads(redis_client, 1)
        else:
            send_refresh_task(redis_client, 1)
        worker.drain_until(lambda: len(worker.received) == 1, 10)
        worker.go_idle()
        send_refresh_task(redis_client, 2)
        worker.drain_until(lambda: len(worker.received) == 2, 10)
    finally:
        worker.close()
    assert worker.received[-1][0] == REFRESH_TOKEN


def test_a_no_ack_control_consumer_is_never_recorded_whatever_the_order(
    app: Any, redis_client: redis.Redis
) -> None:
    push_leads(redis_client, 200)
    worker = Worker(app, redis_client, control_no_ack=True)
    try:
        worker.drain_until(lambda: len(worker.received) >= 10, 30)
        for generation in (1, 2, 3):
            send_refresh_task(redis_client, generation)
        worker.drain_until(lambda: len(worker.received) == 203, 60)
    finally:
        worker.close()
    recorded = {(task, in_unacked) for task, _, in_unacked in worker.received}
    assert recorded == {(SYNC_LEAD, True), (REFRESH_TOKEN, False)}


class ScriptReads(threading.Thread):
    """The RPOPs the pop script runs, by list, until stopped (MONITOR)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.counts: Counter[str] = Counter()
        self.listening = threading.Event()
        self.stop_word = f"pop-order-stop-{time.time()}"
        self.start()
        assert self.listening.wait(10)

    def run(self) -> None:
        with redis.Redis.from_url(self.url).monitor() as monitor:
            self.listening.set()
            for entry in monitor.listen():
                command = entry["command"]
                if self.stop_word in command:
                    return
                if entry["client_type"] == "lua" and command.startswith("RPOP "):
                    self.counts[command.split(" ", 1)[1]] += 1

    def stop(self) -> None:
        redis.Redis.from_url(self.url).echo(self.stop_word)
        self.join(30)

    def rpops(self, lists: set[str]) -> int:
        spelled = {name.encode("unicode_escape").decode() for name in lists}  # as MONITOR does
        return sum(n for key, n in self.counts.items() if key in spelled)
