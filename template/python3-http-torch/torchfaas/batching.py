"""Dynamic batching: concurrent requests share one forward pass.

Request threads `submit()` an item and wait on the returned
`concurrent.futures.Future`, whose result is `(output, BatchInfo)`. A worker
thread takes the first waiting item, then keeps collecting until it has
`max_batch_size` items or `max_delay_s` has passed since the first, and calls
`predict_fn(items)` once. The queue is bounded: when it is full `submit()`
raises `QueueFull` (429 with Retry-After) at once, so overload turns into quick
429s rather than unbounded latency.

A waiter that gives up (inference timeout, client gone) calls `withdraw(future)`:
an item whose batch has not started is taken out of the queue and never computed
(a plain `future.cancel()` also keeps it out of its batch).

Poison isolation: when `predict_fn` raises for a batch of more than one item,
the batch is split in halves and each half re-run, recursively, so only an item
that fails on its own gets the exception and its batchmates are answered. Each
item is computed at most once per halving level (1 + log2(batch size) passes);
items withdrawn meanwhile are not re-run. Answers from a re-run carry
`BatchInfo.retried`, and `future.retried` says so for failures too; `stats`
counts failed batches and re-runs for the metrics.

With `prepare_fn`, an item is submitted raw and prepared (preprocessed) in the
worker, item by item, just before its batch's forward pass: a failing
preparation fails only its own item, and `BatchInfo.prepare_ms` says how long
the batch's preparation took. For CPU-bound preprocessing (image decoding) this
keeps one busy thread per worker instead of one per request: measured in
docs/benchmarks.md, "The fast path".

Waiting only pays when another item is on its way. A request thread that calls
`arriving()` before its (slow) preprocessing tells the batcher one more item is
coming; with `adaptive=True` the worker stops waiting as soon as no announced
item is left, so a lone request never sits out the delay, and a busy replica
still fills its batches.
"""
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .errors import QueueFull

Item = TypeVar("Item")  # what predict_fn takes: a preprocessed request
Output = TypeVar("Output")  # what it returns for each item

@dataclass(frozen=True)
class BatchInfo:
    batch_size: int
    queue_ms: float
    inference_ms: float
    # the first batch of this item failed; this answer comes from a smaller re-run
    retried: bool = False
    # the batch's preparation in the worker (prepare_fn), None without one
    prepare_ms: float | None = None


class BatchFuture(Future):
    """The future `submit()` returns: `retried` is set before its result or exception."""

    retried = False
    withdrawn = False


class BatchStats:
    """Counters the metrics read at scrape time."""

    def __init__(self):
        self._lock = threading.Lock()
        self.batch_failures = 0  # predict raised (for a first batch or a re-run)
        self.batch_retries = 0  # smaller batches re-run after a failure
        self.withdrawn = 0  # items taken out before their batch ran: never computed

    def add(self, name: str, n: int = 1):
        with self._lock:
            setattr(self, name, getattr(self, name) + n)


@dataclass(frozen=True, eq=False)
class _Queued:
    item: object
    future: BatchFuture
    submitted: float


_STOP = object()


class Batcher(Generic[Item, Output]):
    """`predict_fn` answers a batch of items, one output per item, in order; `prepare_fn`
    (optional) turns a raw submitted item into one for `predict_fn` in the worker;
    `retry_after_s` is what a `QueueFull` tells the client."""

    def __init__(self, predict_fn: Callable[[list[Item]], list[Output]], *, max_batch_size: int,
                 max_delay_s: float, queue_size: int, workers: int, adaptive: bool = True,
                 prepare_fn: Callable[[Any], Item] | None = None, retry_after_s: int = 1):
        if not callable(predict_fn):
            raise TypeError("predict_fn must be callable")
        if prepare_fn is not None and not callable(prepare_fn):
            raise TypeError("prepare_fn must be callable or None")
        for name, value in (("max_batch_size", max_batch_size), ("queue_size", queue_size),
                            ("workers", workers)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, not {value!r}")
        if not isinstance(max_delay_s, (int, float)) or not math.isfinite(max_delay_s) or max_delay_s < 0:
            raise ValueError(f"max_delay_s must be a finite number >= 0, not {max_delay_s!r}")
        self._predict = predict_fn
        self._prepare = prepare_fn
        self.max_batch_size = max_batch_size
        self.max_delay_s = float(max_delay_s)
        self.queue_size = queue_size
        self.retry_after_s = retry_after_s
        self.adaptive = adaptive
        self._queue: deque = deque()
        self._arriving = 0  # announced items still being preprocessed
        self.stats = BatchStats()
        self._cond = threading.Condition(threading.Lock())
        # several workers run batches side by side: for a model that releases the
        # GIL and uses one core per forward pass, one worker per core
        self._threads = [threading.Thread(target=self._run, name=f"batcher-{i}", daemon=True)
                         for i in range(workers)]

    @classmethod
    def from_settings(cls, predict_fn: Callable[[list[Item]], list[Output]], settings,
                      prepare_fn: Callable[[Any], Item] | None = None) -> "Batcher[Item, Output]":
        """The batcher production runs: BATCH_SIZE, BATCH_DELAY_MS, QUEUE_SIZE, BATCH_WORKERS,
        RETRY_AFTER_SECONDS."""
        return cls(predict_fn, max_batch_size=settings.batch_size,
                   max_delay_s=settings.batch_delay_ms / 1000, queue_size=settings.queue_size,
                   workers=settings.batch_workers, prepare_fn=prepare_fn, retry_after_s=settings.retry_after_s)

    def start(self) -> "Batcher":
        for thread in self._threads:
            thread.start()
        return self

    def depth(self) -> int:
        return len(self._queue)

    @contextmanager
    def arriving(self):
        """Wrap the work that produces an item: the worker may wait for it."""
        with self._cond:
            self._arriving += 1
        try:
            yield
        finally:
            with self._cond:
                self._arriving -= 1
                self._cond.notify()

    def submit(self, item) -> BatchFuture:
        """Queue `item`; its future's result is (output, BatchInfo). Raises QueueFull."""
        queued = _Queued(item, BatchFuture(), time.perf_counter())
        with self._cond:
            if len(self._queue) >= self.queue_size:
                raise QueueFull(self.retry_after_s)
            self._queue.append(queued)
            self._cond.notify()
        return queued.future

    def withdraw(self, future: BatchFuture) -> bool:
        """The waiter is gone: True if the item will never be computed.

        A queued item leaves the queue (its slot is free at once); an item whose
        batch is already running is still computed, but not re-run if that batch fails.
        """
        future.withdrawn = True
        with self._cond:
            if not future.cancel():
                return False
            for index, queued in enumerate(self._queue):
                if queued is not _STOP and queued.future is future:
                    del self._queue[index]
                    break
        self.stats.add("withdrawn")
        return True

    def stop(self, timeout: float = 5.0):
        """Stop the workers after the items queued before this call."""
        with self._cond:
            self._queue.append(_STOP)
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _collect(self) -> list | None:
        with self._cond:
            while not self._queue:
                self._cond.wait()
            first = self._queue.popleft()
            if first is _STOP:
                self._queue.appendleft(_STOP)  # every worker sees it
                self._cond.notify_all()
                return None
            batch = [] if first.future.cancelled() else [first]
            deadline = time.perf_counter() + self.max_delay_s
            while len(batch) < self.max_batch_size:
                if self._queue:
                    if self._queue[0] is _STOP:
                        break  # leave the stop marker for the next round
                    queued = self._queue.popleft()
                    if not queued.future.cancelled():  # a cancelled item takes no seat
                        batch.append(queued)
                    continue
                if not batch:
                    break  # only cancelled items: go back to waiting for a first one
                if self.adaptive and self._arriving == 0:
                    break  # nothing else is on its way: do not wait for nothing
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return batch

    def _run(self):
        while True:
            collected = self._collect()
            if collected is None:
                return
            # cancelled (the request timed out) before its batch started: not computed
            batch = [q for q in collected if q.future.set_running_or_notify_cancel()]
            prepare_ms = None
            if batch and self._prepare is not None:
                started = time.perf_counter()
                batch = self._prepared(batch)
                prepare_ms = (time.perf_counter() - started) * 1000
            if batch:
                self._run_batch(batch, prepare_ms)

    def _prepared(self, batch: list) -> list:
        """The batch's items prepared; an item whose preparation raises gets the exception."""
        ready = []
        for queued in batch:
            try:
                ready.append(_Queued(self._prepare(queued.item), queued.future, queued.submitted))
            except Exception as exc:  # the item's own fault (bad input): not a batch failure
                queued.future.set_exception(exc)
        return ready

    def _run_batch(self, batch: list, prepare_ms: float | None = None):
        failure = self._attempt(batch, retried=False, prepare_ms=prepare_ms)
        if failure is not None:
            self._isolate(batch, failure, prepare_ms)

    def _attempt(self, batch: list, retried: bool, prepare_ms: float | None = None) -> Exception | None:
        """One forward pass: answer every item, or return what predict raised."""
        started = time.perf_counter()
        try:
            outputs = self._predict([q.item for q in batch])
            if len(outputs) != len(batch):
                raise RuntimeError(f"predict returned {len(outputs)} outputs for {len(batch)} inputs")
        except Exception as exc:
            self.stats.add("batch_failures")
            return exc
        inference_ms = (time.perf_counter() - started) * 1000
        for queued, output in zip(batch, outputs):
            queued.future.retried = retried
            queue_ms = (started - queued.submitted) * 1000 - (prepare_ms or 0.0)
            queued.future.set_result((output, BatchInfo(len(batch), queue_ms, inference_ms, retried, prepare_ms)))
        return None

    def _isolate(self, batch: list, failure: Exception, prepare_ms: float | None = None):
        """`batch` failed: re-run it in halves, level by level (every half of a level
        before any smaller one, so clean halves are answered first), until only the
        items that fail on their own are left; they get their exception. An item
        withdrawn by its waiter (timeout, client gone) is not re-run."""
        level = [(batch, failure)]
        while level:
            next_level = []
            for part, exc in level:
                retry = [q for q in part if not q.future.withdrawn] if len(part) > 1 else []
                rerun = {id(q) for q in retry}  # by identity: items may be tensors
                for queued in part:
                    if id(queued) not in rerun:
                        queued.future.retried = queued.future.retried or len(part) > 1
                        queued.future.set_exception(exc)
                half = (len(retry) + 1) // 2
                for half_part in (retry[:half], retry[half:]):
                    if not half_part:
                        continue
                    self.stats.add("batch_retries")
                    for queued in half_part:
                        queued.future.retried = True
                    exc_half = self._attempt(half_part, retried=True, prepare_ms=prepare_ms)
                    if exc_half is not None:
                        next_level.append((half_part, exc_half))
            level = next_level
