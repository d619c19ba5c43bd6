import threading
import time

import pytest
from torchfaas.batching import Batcher, QueueFull


def test_concurrent_items_share_a_batch():
    sizes = []

    def predict(items):
        sizes.append(len(items))
        time.sleep(0.05)
        return [i * 2 for i in items]

    batcher = Batcher(predict, max_batch_size=4, max_delay_s=0.05, queue_size=16).start()
    pendings = [batcher.submit(i) for i in range(8)]
    assert [p.result(5) for p in pendings] == [i * 2 for i in range(8)]
    assert sizes == [4, 4]
    assert {p.info.batch_size for p in pendings} == {4}
    assert all(p.info.inference_ms >= 50 and p.info.queue_ms >= 0 for p in pendings)
    batcher.stop()


def test_full_queue_rejects_at_once():
    release = threading.Event()
    batcher = Batcher(lambda items: (release.wait(5), items)[1], max_batch_size=1,
                      max_delay_s=0, queue_size=2).start()
    first = batcher.submit("a")
    time.sleep(0.05)  # the worker holds "a"; the queue has room for two more
    batcher.submit("b"), batcher.submit("c")
    with pytest.raises(QueueFull):
        batcher.submit("d")
    release.set()
    assert first.result(5) == "a"
    batcher.stop()


def test_a_failing_batch_fails_each_of_its_requests_and_the_worker_survives():
    def predict(items):
        if "bad" in items:
            raise ValueError("broken input")
        return items

    batcher = Batcher(predict, max_batch_size=2, max_delay_s=0.05).start()
    bad, other = batcher.submit("bad"), batcher.submit("ok")
    for pending in (bad, other):
        with pytest.raises(ValueError):
            pending.result(5)
    assert batcher.submit("fine").result(5) == "fine"
    batcher.stop()


def test_timed_out_item_is_skipped_if_not_started():
    started = []
    release = threading.Event()

    def predict(items):
        started.extend(items)
        release.wait(5)
        return items

    batcher = Batcher(predict, max_batch_size=1, max_delay_s=0).start()
    busy = batcher.submit("busy")
    time.sleep(0.05)
    late = batcher.submit("late")
    with pytest.raises(TimeoutError):
        late.result(0.05)
    release.set()
    busy.result(5)
    batcher.stop()
    assert started == ["busy"]  # the abandoned item never reached the model
