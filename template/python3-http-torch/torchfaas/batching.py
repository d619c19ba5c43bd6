"""Dynamic batching: concurrent requests share one forward pass.

Request threads `submit()` an item and wait on the returned `Pending`. One
worker thread takes the first waiting item, then keeps collecting until it has
`max_batch_size` items or `max_delay_s` has passed since the first, and calls
`predict_fn(items)` once. The queue is bounded: when it is full `submit()`
raises `QueueFull` at once, so overload turns into quick 429s rather than
unbounded latency.
"""
import queue
import threading
import time
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


class Batcher:
    def __init__(self, predict_fn, max_batch_size: int = 8, max_delay_s: float = 0.002,
                 queue_size: int = 64):
        self._predict = predict_fn
        self.max_batch_size = max(1, max_batch_size)
        self.max_delay_s = max(0.0, max_delay_s)
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        self._thread = threading.Thread(target=self._run, name="batcher", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def depth(self) -> int:
        return self._queue.qsize()

    def submit(self, item) -> Pending:
        pending = Pending(item)
        try:
            self._queue.put_nowait(pending)
        except queue.Full:
            raise QueueFull from None
        return pending

    def stop(self, timeout: float = 5.0):
        """Stop the worker after the items queued before this call."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _collect(self) -> list | None:
        first = self._queue.get()
        if first is None:
            return None
        batch = [first]
        deadline = time.perf_counter() + self.max_delay_s
        while len(batch) < self.max_batch_size:
            remaining = deadline - time.perf_counter()
            try:
                nxt = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                self._queue.put(None)  # leave the stop marker for the next round
                break
            batch.append(nxt)
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
