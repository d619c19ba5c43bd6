"""Batching through the app: concurrent requests share a forward pass, each gets its
own answer and its own line naming the batch it was served in. (The Batcher
itself is tests/unit/test_batching.py.)"""
import threading

from support.functions.standin.handler import StandIn


def test_concurrent_requests_share_a_batch(make_function):
    gate = threading.Event()
    handler = StandIn(predict_gate=gate)
    fn = make_function(handler, batch_size=4, batch_delay_ms=200)
    # the first request holds the model; the next four queue behind it and form one batch
    first = threading.Thread(target=fn.post, args=(b"first",), kwargs={"headers": {"X-Request-Id": "first"}})
    first.start()
    while not handler.batches:
        gate.wait(0.005)
    bodies = [b"a" * n for n in (1, 2, 3, 4)]
    results = {}

    def send(body):
        results[body] = fn.post(body, headers={"X-Request-Id": f"len-{len(body)}"})

    workers = [threading.Thread(target=send, args=(body,)) for body in bodies]
    for w in workers:
        w.start()
    while fn.runtime.queue_depth() < 4:
        gate.wait(0.005)
    gate.set()
    for w in workers + [first]:
        w.join(10)
    assert handler.batches[0] == [b"first"]
    assert sorted(handler.batches[1]) == bodies  # the four shared one forward pass
    for body, res in results.items():
        assert res.status_code == 200 and res.json["length"] == len(body)  # each its own answer
        [line] = fn.lines_for(f"len-{len(body)}")
        assert line["batch_size"] == 4 and line["queue_ms"] > 0
    assert fn.lines_for("first")[0]["batch_size"] == 1


def test_a_batch_never_exceeds_batch_size(make_function):
    gate = threading.Event()
    handler = StandIn(predict_gate=gate)
    fn = make_function(handler, batch_size=3, batch_delay_ms=50, queue_size=32)
    threads = [threading.Thread(target=fn.post, args=(b"x%d" % i,)) for i in range(10)]
    for t in threads:
        t.start()
    while fn.runtime.queue_depth() + sum(len(b) for b in handler.batches) < 10:
        gate.wait(0.005)
    gate.set()
    for t in threads:
        t.join(10)
    assert sorted(len(b) for b in handler.batches)[-1] == 3
    assert sum(len(b) for b in handler.batches) == 10
    assert sorted(line["batch_size"] for line in fn.events("inference"))[-1] == 3


def test_a_lone_request_does_not_sit_out_the_batch_delay(make_function):
    fn = make_function(batch_delay_ms=2000)
    res = fn.post(b"alone", headers={"X-Request-Id": "alone"})
    assert res.status_code == 200
    line = fn.lines_for("alone")[0]
    assert line["batch_size"] == 1 and line["latency_ms"] < 1000


def test_batch_workers_come_from_the_handler_unless_set(make_function):
    class TwoWorkers(StandIn):
        batch_workers = 2

    assert make_function(TwoWorkers()).settings.batch_workers == 2
    assert make_function(TwoWorkers(), batch_workers=3).settings.batch_workers == 3
    assert make_function().settings.batch_workers == 1
