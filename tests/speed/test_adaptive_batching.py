"""The adaptive batcher: wait for items that are on their way, never for nothing."""
import threading
import time

from torchfaas.batching import Batcher


def test_a_lone_item_does_not_wait_out_the_delay():
    batcher = Batcher(lambda items: items, max_batch_size=8, max_delay_s=0.5, adaptive=True).start()
    try:
        started = time.perf_counter()
        with batcher.arriving():
            pending = batcher.submit("only")
        assert pending.result(5) == "only"
        assert time.perf_counter() - started < 0.25  # not the 0.5 s delay
        assert pending.info.batch_size == 1
    finally:
        batcher.stop()


def test_items_still_being_preprocessed_join_the_batch():
    sizes = []
    batcher = Batcher(lambda items: (sizes.append(len(items)), items)[1], max_batch_size=8,
                      max_delay_s=1.0, adaptive=True).start()
    results = {}
    go = threading.Barrier(4)

    def request(name, preprocess_s):
        with batcher.arriving():
            go.wait()
            time.sleep(preprocess_s)  # slower preprocessing: the batch waits for it
            pending = batcher.submit(name)
        results[name] = pending.result(5)

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
    batcher = Batcher(lambda items: (sizes.append(len(items)), items)[1], max_batch_size=4,
                      max_delay_s=0.2, adaptive=True).start()
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

    batcher = Batcher(predict, max_batch_size=1, max_delay_s=0, workers=2).start()
    pendings = [batcher.submit(i) for i in range(4)]
    assert [p.result(5) for p in pendings] == [0, 1, 2, 3]
    assert peak[0] == 2
    batcher.stop()
    assert not any(t.is_alive() for t in batcher._threads)
