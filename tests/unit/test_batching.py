"""The Batcher (torchfaas/batching.py): every test of it lives here.

Sharing a forward pass, the bounded queue, failures, abandoned items, the
adaptive wait (wait for items on their way, never for nothing), several
workers, and the checks on its arguments.
"""
import threading
import time

import pytest
from torchfaas import Settings
from torchfaas.batching import Batcher, QueueFull


def make(predict, **overrides) -> Batcher:
    args = {"max_batch_size": 8, "max_delay_s": 0.002, "queue_size": 16, "workers": 1, **overrides}
    return Batcher(predict, **args).start()


def test_concurrent_items_share_a_batch():
    sizes = []

    def predict(items):
        sizes.append(len(items))
        time.sleep(0.05)
        return [i * 2 for i in items]

    # not adaptive: nothing announces the items, the batch waits out the delay
    batcher = make(predict, max_batch_size=4, max_delay_s=0.05, adaptive=False)
    futures = [batcher.submit(i) for i in range(8)]
    results = [f.result(5) for f in futures]
    assert [output for output, _ in results] == [i * 2 for i in range(8)]
    assert sizes == [4, 4]
    assert {info.batch_size for _, info in results} == {4}
    assert all(info.inference_ms >= 50 and info.queue_ms >= 0 for _, info in results)
    batcher.stop()


def test_full_queue_rejects_at_once():
    release = threading.Event()
    batcher = make(lambda items: (release.wait(5), items)[1], max_batch_size=1, max_delay_s=0,
                   queue_size=2)
    first = batcher.submit("a")
    time.sleep(0.05)  # the worker holds "a"; the queue has room for two more
    batcher.submit("b"), batcher.submit("c")
    with pytest.raises(QueueFull):
        batcher.submit("d")
    release.set()
    assert first.result(5)[0] == "a"
    batcher.stop()


def test_a_failing_batch_fails_each_of_its_requests_and_the_worker_survives():
    def predict(items):
        if "bad" in items:
            raise ValueError("broken input")
        return items

    batcher = make(predict, max_batch_size=2, max_delay_s=0.05, adaptive=False)
    bad, other = batcher.submit("bad"), batcher.submit("ok")
    for future in (bad, other):
        with pytest.raises(ValueError):
            future.result(5)
    assert batcher.submit("fine").result(5)[0] == "fine"
    batcher.stop()


def test_predict_returning_the_wrong_number_of_outputs_is_a_fault():
    batcher = make(lambda items: items[:-1], max_batch_size=1)
    with pytest.raises(RuntimeError, match="0 outputs for 1 inputs"):
        batcher.submit("x").result(5)
    batcher.stop()


def test_timed_out_item_is_skipped_if_not_started():
    started = []
    release = threading.Event()

    def predict(items):
        started.extend(items)
        release.wait(5)
        return items

    batcher = make(predict, max_batch_size=1, max_delay_s=0)
    busy = batcher.submit("busy")
    time.sleep(0.05)
    late = batcher.submit("late")
    with pytest.raises(TimeoutError):
        late.result(0.05)
    assert late.cancel()  # what the runtime does on a timeout
    release.set()
    busy.result(5)
    batcher.stop()
    assert started == ["busy"]  # the abandoned item never reached the model


def test_a_lone_item_does_not_wait_out_the_delay():
    batcher = make(lambda items: items, max_batch_size=8, max_delay_s=0.5)
    try:
        started = time.perf_counter()
        with batcher.arriving():
            future = batcher.submit("only")
        output, info = future.result(5)
        assert output == "only"
        assert time.perf_counter() - started < 0.25  # not the 0.5 s delay
        assert info.batch_size == 1
    finally:
        batcher.stop()


def test_items_still_being_preprocessed_join_the_batch():
    sizes = []
    batcher = make(lambda items: (sizes.append(len(items)), items)[1], max_batch_size=8, max_delay_s=1.0)
    results = {}
    go = threading.Barrier(4)

    def request(name, preprocess_s):
        with batcher.arriving():
            go.wait()
            time.sleep(preprocess_s)  # slower preprocessing: the batch waits for it
            future = batcher.submit(name)
        results[name] = future.result(5)[0]

    threads = [threading.Thread(target=request, args=(f"r{i}", 0.02 * i)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    batcher.stop()
    assert results == {f"r{i}": f"r{i}" for i in range(4)}
    assert sizes == [4]


def test_an_unannounced_item_is_dispatched_at_once():
    sizes = []
    batcher = make(lambda items: (sizes.append(len(items)), items)[1], max_batch_size=4, max_delay_s=0.2)
    first = batcher.submit("a")  # nobody announced anything: dispatched at once
    first.result(5)
    with batcher.arriving():
        pass
    batcher.stop()
    assert sizes == [1]


def test_two_workers_run_two_batches_at_once_and_both_stop():
    running, peak, lock = [0], [0], threading.Lock()

    def predict(items):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.1)
        with lock:
            running[0] -= 1
        return items

    batcher = make(predict, max_batch_size=1, max_delay_s=0, workers=2)
    futures = [batcher.submit(i) for i in range(4)]
    assert [f.result(5)[0] for f in futures] == [0, 1, 2, 3]
    assert peak[0] == 2
    batcher.stop()
    assert not any(t.is_alive() for t in batcher._threads)


@pytest.mark.parametrize("bad", [
    {"max_batch_size": 0}, {"max_batch_size": 2.5}, {"queue_size": 0}, {"workers": 0},
    {"workers": True}, {"max_delay_s": -1}, {"max_delay_s": float("nan")}, {"max_delay_s": "2"},
])
def test_arguments_are_checked_at_the_boundary(bad):
    args = {"max_batch_size": 8, "max_delay_s": 0.002, "queue_size": 16, "workers": 1, **bad}
    with pytest.raises(ValueError):
        Batcher(lambda items: items, **args)
    with pytest.raises(TypeError):
        Batcher("not callable", max_batch_size=1, max_delay_s=0, queue_size=1, workers=1)


def test_from_settings_is_what_production_runs(monkeypatch):
    for name, value in {"BATCH_SIZE": "4", "BATCH_DELAY_MS": "3", "QUEUE_SIZE": "9", "BATCH_WORKERS": "2"}.items():
        monkeypatch.setenv(name, value)
    batcher = Batcher.from_settings(lambda items: items, Settings())
    assert (batcher.max_batch_size, batcher.max_delay_s, batcher.queue_size, len(batcher._threads)) == \
        (4, 0.003, 9, 2)
    assert batcher.adaptive
