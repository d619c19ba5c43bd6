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


def poisoned(calls: list, sleep_s: float = 0.0):
    """A predict that raises for the whole batch when any item in it is bad."""
    def predict(items):
        calls.append(list(items))
        time.sleep(sleep_s)
        if any(str(item).startswith("bad") for item in items):
            raise ValueError("broken input")
        return [f"out-{item}" for item in items]
    return predict


def one_batch(batcher: Batcher, items: list) -> list:
    """Submit `items` so that they form one batch (the worker is held until all are in)."""
    with batcher.arriving():
        return [batcher.submit(item) for item in items]


def test_a_poisoned_batch_fails_only_the_item_that_fails_alone():
    calls = []
    batcher = make(poisoned(calls), max_batch_size=8, max_delay_s=1.0)
    items = ["ok0", "ok1", "ok2", "bad", "ok4", "ok5", "ok6", "ok7"]
    futures = one_batch(batcher, items)
    for item, future in zip(items, futures):
        if item == "bad":
            with pytest.raises(ValueError, match="broken input"):
                future.result(5)
        else:
            output, info = future.result(5)
            assert output == f"out-{item}"
            assert info.retried and info.batch_size < 8
        assert future.retried
    # halving: 8 -> 4 + 4 -> 2 + 2 -> 1 + 1, the clean halves answered at once
    assert [len(c) for c in calls] == [8, 4, 4, 2, 2, 1, 1]
    assert sum("bad" in c for c in calls) == 4  # once per halving level
    assert (batcher.stats.batch_failures, batcher.stats.batch_retries) == (4, 6)
    assert batcher.submit("fine").result(5)[0] == "out-fine"  # the worker survives
    batcher.stop()


def test_two_poisoned_items_fail_alone_and_their_batchmates_are_answered():
    calls = []
    batcher = make(poisoned(calls), max_batch_size=8, max_delay_s=1.0)
    items = ["bad-a", "ok1", "ok2", "ok3", "ok4", "ok5", "bad-b", "ok7"]
    futures = one_batch(batcher, items)
    outcomes = []
    for future in futures:
        try:
            outcomes.append(future.result(5)[0])
        except ValueError:
            outcomes.append("500")
    assert outcomes == ["500", "out-ok1", "out-ok2", "out-ok3", "out-ok4", "out-ok5", "500", "out-ok7"]
    assert len(calls) <= 1 + 2 + 4 + 8 and max(sum(item in c for c in calls) for item in items) <= 4
    batcher.stop()


def test_a_model_that_fails_every_batch_costs_at_most_one_pass_per_halving_level():
    calls = []

    def broken(items):
        calls.append(len(items))
        raise RuntimeError("model is down")

    batcher = make(broken, max_batch_size=8, max_delay_s=1.0)
    futures = one_batch(batcher, list(range(8)))
    for future in futures:
        with pytest.raises(RuntimeError, match="model is down"):
            future.result(5)
    assert sum(calls) == 8 * 4  # each item in 4 passes: 8, 4, 2, 1
    assert batcher.stats.batch_failures == 15
    batcher.stop()


def test_a_lone_failing_item_is_not_retried():
    calls = []
    batcher = make(poisoned(calls), max_batch_size=8)
    future = batcher.submit("bad")
    with pytest.raises(ValueError):
        future.result(5)
    assert not future.retried and calls == [["bad"]]
    assert (batcher.stats.batch_failures, batcher.stats.batch_retries) == (1, 0)
    batcher.stop()


def test_an_item_withdrawn_while_its_batch_runs_is_not_re_run():
    calls = []
    batcher = make(poisoned(calls, sleep_s=0.2), max_batch_size=4, max_delay_s=1.0)
    futures = one_batch(batcher, ["ok0", "gone", "bad", "ok3"])
    time.sleep(0.05)  # the batch of 4 is in predict
    assert not batcher.withdraw(futures[1])  # too late to skip it, but it is not re-run
    with pytest.raises(ValueError):
        futures[1].result(5)
    assert futures[0].result(5)[0] == "out-ok0" and futures[3].result(5)[0] == "out-ok3"
    assert all("gone" not in c for c in calls[1:])
    batcher.stop()


def test_predict_raising_never_wedges_the_worker():
    batcher = make(poisoned([]), max_batch_size=2, max_delay_s=0.05, adaptive=False)
    for _ in range(5):
        bad, other = batcher.submit("bad"), batcher.submit("ok")
        with pytest.raises(ValueError):
            bad.result(5)
        assert other.result(5)[0] == "out-ok"
    assert batcher.submit("fine").result(5)[0] == "out-fine"
    batcher.stop()


def held_predict():
    """A predict that records what it computed and holds the worker until `release`."""
    started = []
    release = threading.Event()

    def predict(items):
        started.extend(items)
        release.wait(5)
        return items

    return predict, started, release


def test_a_withdrawn_queued_item_frees_its_slot_and_is_never_computed():
    predict, started, release = held_predict()

    batcher = make(predict, max_batch_size=4, max_delay_s=0, queue_size=2)
    busy = batcher.submit("busy")
    time.sleep(0.05)  # the worker holds "busy"
    gone, waiting = batcher.submit("gone"), batcher.submit("waiting")
    with pytest.raises(QueueFull):
        batcher.submit("refused")
    assert batcher.withdraw(gone) and gone.cancelled()
    assert batcher.depth() == 1
    late = batcher.submit("late")  # the slot is free at once
    release.set()
    assert [f.result(5)[0] for f in (busy, waiting, late)] == ["busy", "waiting", "late"]
    batcher.stop()
    assert "gone" not in started and batcher.stats.withdrawn == 1


def test_predict_returning_the_wrong_number_of_outputs_is_a_fault():
    batcher = make(lambda items: items[:-1], max_batch_size=1)
    with pytest.raises(RuntimeError, match="0 outputs for 1 inputs"):
        batcher.submit("x").result(5)
    batcher.stop()


def test_timed_out_item_is_skipped_if_not_started():
    predict, started, release = held_predict()

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


def test_prepare_fn_runs_in_the_worker_and_a_failing_item_fails_alone():
    threads, predicted = set(), []

    def prepare(raw):
        threads.add(threading.current_thread().name)
        if raw == "corrupt":
            raise ValueError("not an image")
        time.sleep(0.01)
        return raw.upper()

    def predict(items):
        predicted.append(list(items))
        return [f"out-{item}" for item in items]

    batcher = make(predict, prepare_fn=prepare, max_batch_size=8, max_delay_s=1.0)
    futures = one_batch(batcher, ["a", "corrupt", "b"])
    assert futures[0].result(5)[0] == "out-A" and futures[2].result(5)[0] == "out-B"
    with pytest.raises(ValueError, match="not an image"):
        futures[1].result(5)
    assert predicted == [["A", "B"]]  # prepared items only, one forward pass
    assert threads == {"batcher-0"}
    _, info = futures[0].result()
    # the batch's preparation (2 good items x 10 ms) is its own field, not queue time
    assert info.prepare_ms >= 20 and info.queue_ms < info.prepare_ms
    assert batcher.stats.batch_failures == 0  # a bad input is not a failed batch
    batcher.stop()


def test_without_prepare_fn_there_is_no_prepare_time():
    batcher = make(lambda items: items)
    assert batcher.submit("x").result(5)[1].prepare_ms is None
    batcher.stop()


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
    with pytest.raises(TypeError):
        Batcher(lambda items: items, max_batch_size=1, max_delay_s=0, queue_size=1, workers=1, prepare_fn=3)


def test_from_settings_is_what_production_runs(monkeypatch):
    for name, value in {"BATCH_SIZE": "4", "BATCH_DELAY_MS": "3", "QUEUE_SIZE": "9", "BATCH_WORKERS": "2"}.items():
        monkeypatch.setenv(name, value)
    batcher = Batcher.from_settings(lambda items: items, Settings())
    assert (batcher.max_batch_size, batcher.max_delay_s, batcher.queue_size, len(batcher._threads)) == \
        (4, 0.003, 9, 2)
    assert batcher.adaptive
