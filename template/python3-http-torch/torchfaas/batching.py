"""Dynamic batching: concurrent requests share one forward pass.

Request threads `submit()` an item and wait on the returned `Pending`. One
worker thread takes the first waiting item, then keeps collecting until it has
`max_batch_size` items or `max_delay_s` has passed since the first, and calls
`predict_fn(items)` once. The queue is bounded: when it is full `submit()`
raises `QueueFull` at once, so overload turns into quick 429s rather than
unbounded latency.

Waiting only pays when another item is on its way. A request thread that calls
`arriving()` before its (slow) preprocessing tells the batcher one more item is
coming; with `adaptive=True` the worker stops waiting as soon as no announced
item is left, so a lone request never sits out the delay, and a busy replica
still fills its batches.
"""
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass


class QueueFull(Exception):
    pass


@dataclass
class BatchInfo:
    batch_size: int
    queue_ms: float
    inference_ms: float


class Pending:
    """One submitted item: the request thread waits here for its output."""

    __slots__ = ("item", "submitted", "cancelled", "_done", "output", "error", "info")

    def __init__(self, item):
        self.item = item
        self.submitted = time.perf_counter()
        self.cancelled = False
        self._done = threading.Event()
        self.output = self.error = self.info = None

    def result(self, timeout: float):
        """The output, or raise the batch's exception; TimeoutError after `timeout`."""
        if not self._done.wait(timeout):
            self.cancelled = True  # the worker skips it if it has not started yet
            raise TimeoutError
        if self.error is not None:
            raise self.error
        return self.output

    def _finish(self, output=None, error=None, info=None):
        self.output, self.error, self.info = output, error, info
        self._done.set()


_STOP = object()


class Batcher:
    def __init__(self, predict_fn, max_batch_size: int = 8, max_delay_s: float = 0.002,
                 queue_size: int = 64, adaptive: bool = False, workers: int = 1):
        self._predict = predict_fn
        self.max_batch_size = max(1, max_batch_size)
        self.max_delay_s = max(0.0, max_delay_s)
        self.queue_size = max(1, queue_size)
        self.adaptive = adaptive
        self._queue: deque = deque()
        self._arriving = 0  # announced items still being preprocessed
        self._cond = threading.Condition(threading.Lock())
        # several workers run batches side by side: for a model that releases the
        # GIL and uses one core per forward pass, one worker per core
        self._threads = [threading.Thread(target=self._run, name=f"batcher-{i}", daemon=True)
                         for i in range(max(1, workers))]

    def start(self):
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

    def submit(self, item) -> Pending:
        pending = Pending(item)
        with self._cond:
            if len(self._queue) >= self.queue_size:
                raise QueueFull
            self._queue.append(pending)
            self._cond.notify()
        return pending

    def stop(self, timeout: float = 5.0):
        """Stop the worker after the items queued before this call."""
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
            batch = [first]
            deadline = time.perf_counter() + self.max_delay_s
            while len(batch) < self.max_batch_size:
                if self._queue:
                    if self._queue[0] is _STOP:
                        break  # leave the stop marker for the next round
                    batch.append(self._queue.popleft())
                    continue
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
            batch = [p for p in collected if not p.cancelled]
            if not batch:
                continue
            started = time.perf_counter()
            try:
                outputs = self._predict([p.item for p in batch])
                if len(outputs) != len(batch):
                    raise RuntimeError(f"predict returned {len(outputs)} outputs for {len(batch)} inputs")
                error = None
            except Exception as exc:  # every waiter of the batch gets the fault
                outputs, error = [None] * len(batch), exc
            inference_ms = (time.perf_counter() - started) * 1000
            for pending, output in zip(batch, outputs):
                info = BatchInfo(len(batch), (started - pending.submitted) * 1000, inference_ms)
                pending._finish(output, error, info)
