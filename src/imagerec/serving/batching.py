"""Group single-image requests that arrive together into one backend batch.

A :class:`MicroBatcher` owns one worker thread and a bounded queue. Callers
``submit`` one item and get a future; the worker takes the first waiting item,
waits at most ``max_wait`` seconds for more (never longer than it takes to
fill ``max_batch``), runs the batch function once, and hands each caller its
own result. While a batch runs, new items queue up, so under load batches
fill without any waiting at all. With ``expecting`` (how many items are on
their way, e.g. still being decoded) the worker waits only while something
is on its way, so a lone request is never held back. A full queue refuses new items at once with
:class:`QueueFullError` instead of letting memory grow.

>>> import numpy as np
>>> batcher = MicroBatcher(lambda items: [x * 2 for x in items], max_batch=8, max_wait=0.001)
>>> futures = [batcher.submit(i) for i in range(3)]
>>> [f.result(timeout=5) for f in futures]
[0, 2, 4]
>>> batcher.close()
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Generic, Sequence, TypeVar

from ..core.errors import ImagerecError, UsageError

__all__ = ["MicroBatcher", "QueueFullError", "BatcherClosedError", "BatchStats"]

T = TypeVar("T")
R = TypeVar("R")


class QueueFullError(ImagerecError):
    """The batcher's queue is full: the caller should retry later."""


class BatcherClosedError(ImagerecError):
    """The batcher was closed (the service is shutting down)."""


@dataclass(frozen=True)
class BatchStats:
    """What one batch looked like, for metrics."""

    size: int
    seconds: float


class MicroBatcher(Generic[T, R]):
    """Run ``fn(items) -> results`` (same length, same order) on grouped items.

    ``max_batch=1`` turns batching off: every item runs alone, in arrival
    order. ``on_batch`` is called after each batch with its size and time.
    """

    def __init__(
        self,
        fn: Callable[[list[T]], Sequence[R]],
        *,
        max_batch: int = 32,
        max_wait: float = 0.005,
        max_queue: int = 256,
        on_batch: Callable[[BatchStats], None] | None = None,
        expecting: Callable[[], int] | None = None,
        name: str = "batcher",
    ) -> None:
        if max_batch < 1:
            raise UsageError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait < 0:
            raise UsageError(f"max_wait must be 0 or more seconds, got {max_wait}")
        if max_queue < 1:
            raise UsageError(f"max_queue must be at least 1, got {max_queue}")
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.max_queue = max_queue
        self.on_batch = on_batch
        self.expecting = expecting
        self._queue: queue.Queue[tuple[T, Future] | None] = queue.Queue(maxsize=max_queue)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._work, name=f"imagerec-{name}", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Items waiting (not counting the batch being run)."""
        return self._queue.qsize()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._closed.is_set()

    def submit(self, item: T) -> "Future[R]":
        """Queue ``item``; raises :class:`QueueFullError` when the queue is full."""
        if self._closed.is_set():
            raise BatcherClosedError("the service is shutting down and takes no new work")
        future: Future[R] = Future()
        try:
            self._queue.put_nowait((item, future))
        except queue.Full:
            raise QueueFullError(
                f"the queue is full ({self.max_queue} images waiting); retry in a moment"
            ) from None
        return future

    def close(self, timeout: float = 5.0) -> None:
        """Stop taking work, finish what is queued, stop the worker.

        Items still queued after ``timeout`` seconds fail with
        :class:`BatcherClosedError`.
        """
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            self._queue.put(None, timeout=timeout)  # behind everything already queued
        except queue.Full:
            pass
        self._thread.join(timeout)
        while True:
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                break
            if entry is not None and entry[1].set_running_or_notify_cancel():
                entry[1].set_exception(BatcherClosedError("the service shut down before this image was run"))

    # -- worker -----------------------------------------------------------

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self.max_wait
            stop = False
            while len(batch) < self.max_batch:
                # Items already waiting are taken at once; only an
                # under-full batch waits, and never past the deadline.
                try:
                    entry = self._queue.get_nowait()
                except queue.Empty:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or (self.expecting is not None and self.expecting() <= 0):
                        break
                    try:
                        entry = self._queue.get(timeout=remaining)
                    except queue.Empty:
                        break
                if entry is None:
                    stop = True
                    break
                batch.append(entry)
            self._run(batch)
            if stop:
                return

    def _run(self, batch: list[tuple[Any, Future]]) -> None:
        # A caller that gave up (timeout, disconnect) cancelled its future:
        # its image is not run at all.
        live = [(item, future) for item, future in batch if future.set_running_or_notify_cancel()]
        if not live:
            return
        started = time.perf_counter()
        try:
            results = self.fn([item for item, _ in live])
            if len(results) != len(live):
                raise RuntimeError(f"batch function returned {len(results)} results for {len(live)} items")
        except BaseException as exc:  # noqa: BLE001 - every caller must hear about the failure
            for _, future in live:
                future.set_exception(exc)
            return
        finally:
            if self.on_batch is not None:
                self.on_batch(BatchStats(len(live), time.perf_counter() - started))
        for (_, future), result in zip(live, results):
            future.set_result(result)
