"""The micro-batcher: grouping, limits, failures, cancellation, shutdown."""

from __future__ import annotations

import threading

import pytest

from imagerec.core.errors import UsageError
from imagerec.serving.batching import BatcherClosedError, MicroBatcher, QueueFullError


class Recorder:
    """A batch function that records batch sizes and can be held on a gate."""

    def __init__(self, gated: bool = False) -> None:
        self.sizes: list[int] = []
        self.gate = threading.Event()
        self.entered = threading.Event()
        if not gated:
            self.gate.set()

    def __call__(self, items):
        self.entered.set()
        self.gate.wait(10)
        self.sizes.append(len(items))
        return [item * 10 for item in items]


def test_items_waiting_together_form_one_batch_in_order():
    fn = Recorder(gated=True)
    batcher = MicroBatcher(fn, max_batch=8, max_wait=0.0)
    first = batcher.submit(0)
    fn.entered.wait(5)  # the worker is busy with item 0 ...
    rest = [batcher.submit(i) for i in range(1, 11)]  # ... while ten more arrive
    fn.gate.set()
    assert [f.result(5) for f in [first, *rest]] == [i * 10 for i in range(11)]
    assert fn.sizes == [1, 8, 2]  # never more than max_batch
    batcher.close()


def test_max_wait_gathers_items_that_arrive_shortly_after():
    fn = Recorder()
    batcher = MicroBatcher(fn, max_batch=4, max_wait=2.0)
    futures = [batcher.submit(i) for i in range(4)]  # a full batch goes at once, without the 2 s wait
    assert [f.result(1.5) for f in futures] == [0, 10, 20, 30]
    assert fn.sizes == [4]
    batcher.close()


def test_batching_off_runs_every_item_alone():
    fn = Recorder(gated=True)
    batcher = MicroBatcher(fn, max_batch=1, max_wait=0.01)
    futures = [batcher.submit(i) for i in range(5)]
    fn.gate.set()
    assert [f.result(5) for f in futures] == [0, 10, 20, 30, 40]
    assert fn.sizes == [1] * 5
    batcher.close()


def test_full_queue_refuses_at_once_and_recovers():
    fn = Recorder(gated=True)
    batcher = MicroBatcher(fn, max_batch=1, max_wait=0.0, max_queue=2)
    running = batcher.submit(1)
    fn.entered.wait(5)
    queued = [batcher.submit(2), batcher.submit(3)]
    with pytest.raises(QueueFullError, match="queue is full"):
        batcher.submit(4)
    fn.gate.set()
    assert [f.result(5) for f in [running, *queued]] == [10, 20, 30]
    assert batcher.submit(5).result(5) == 50
    batcher.close()


def test_a_failing_batch_fails_its_callers_only():
    calls = []

    def fn(items):
        calls.append(list(items))
        if 13 in items:
            raise RuntimeError("unlucky batch")
        return items

    batcher = MicroBatcher(fn, max_batch=1, max_wait=0.0)
    bad = batcher.submit(13)
    with pytest.raises(RuntimeError, match="unlucky"):
        bad.result(5)
    assert batcher.submit(7).result(5) == 7  # the worker survived
    batcher.close()


def test_cancelled_items_are_not_run():
    fn = Recorder(gated=True)
    batcher = MicroBatcher(fn, max_batch=8, max_wait=0.0)
    first = batcher.submit(1)
    fn.entered.wait(5)
    abandoned = batcher.submit(2)
    kept = batcher.submit(3)
    assert abandoned.cancel()
    fn.gate.set()
    assert first.result(5) == 10 and kept.result(5) == 30
    assert fn.sizes == [1, 1]  # item 2 never reached the batch function
    batcher.close()


def test_close_finishes_queued_work_and_refuses_new():
    fn = Recorder(gated=True)
    batcher = MicroBatcher(fn, max_batch=2, max_wait=0.0)
    futures = [batcher.submit(i) for i in range(3)]
    fn.entered.wait(5)
    threading.Timer(0.1, fn.gate.set).start()
    batcher.close(timeout=5)
    assert [f.result(0) for f in futures] == [0, 10, 20]
    assert not batcher.alive
    with pytest.raises(BatcherClosedError):
        batcher.submit(9)


@pytest.mark.parametrize("option", [{"max_batch": 0}, {"max_wait": -1}, {"max_queue": 0}])
def test_bad_settings(option):
    with pytest.raises(UsageError):
        MicroBatcher(lambda items: items, **option)


def test_a_lone_item_does_not_wait_when_nothing_else_is_coming():
    fn = Recorder()
    batcher = MicroBatcher(fn, max_batch=8, max_wait=60.0, expecting=lambda: 0)
    assert batcher.submit(4).result(timeout=10) == 40  # not held for the 60 s max_wait
    batcher.close()


def test_the_worker_waits_for_items_on_their_way():
    on_their_way = [1]
    fn = Recorder()
    batcher = MicroBatcher(fn, max_batch=8, max_wait=60.0, expecting=lambda: on_their_way[0])
    first = batcher.submit(1)
    threading.Event().wait(0.05)  # the worker holds item 1, waiting for the one on its way
    on_their_way[0] = 0
    second = batcher.submit(2)
    assert (first.result(10), second.result(10)) == (10, 20)
    assert fn.sizes == [2]
    batcher.close()
