"""Every error status of the contract, with its JSON body and its one log line."""
import io
import json
import threading
import time
import uuid

import pytest
from PIL import Image

from loadkit.photos import photo_bytes
from support.classifier import MAX_BODY
from support.contract import assert_json_error
from support.functions.standin.handler import SECRET, StandIn
from torchfaas.settings import Settings


def png_bomb(width: int, height: int) -> bytes:
    """A decompression bomb: a few KB of PNG that decodes to width*height pixels."""
    out = io.BytesIO()
    Image.new("L", (width, height)).save(out, format="PNG", optimize=True)
    return out.getvalue()


@pytest.mark.parametrize("data,content_type,params,code", [
    (b"", "image/jpeg", None, "empty_body"),
    (b"\xff\xd8\xff\xe0 definitely not a jpeg", "image/jpeg", None, "invalid_image"),
    (lambda: photo_bytes("rocket.jpg")[:5000], "image/jpeg", None, "invalid_image"),  # truncated
    (b'{"image": ', "application/json", None, "invalid_json"),
    (b'{"picture": "abc"}', "application/json", None, "invalid_json"),
    (b'{"image": "not base64!!"}', "application/json", None, "invalid_base64"),
    (lambda: photo_bytes("rocket.jpg"), "image/jpeg", {"topk": "0"}, "invalid_topk"),
    (lambda: photo_bytes("rocket.jpg"), "image/jpeg", {"topk": "many"}, "invalid_topk"),
])
def test_400s(classifier, data, content_type, params, code):
    rid = f"e400-{uuid.uuid4().hex[:8]}"
    res = classifier.post(data() if callable(data) else data, content_type, params, headers={"X-Request-Id": rid})
    assert_json_error(res, 400, code)
    [line] = classifier.lines_for(rid)
    assert line["status"] == 400 and line["level"] == "WARNING" and line["error"] == code


def test_405_and_404(classifier):
    res = classifier.request("PUT", "/", b"x")
    assert_json_error(res, 405, "method_not_allowed")
    assert res.headers["Allow"] == "GET, POST"
    assert_json_error(classifier.post(b"x", path="/nope"), 404, "not_found")
    # a GET to an unknown path and werkzeug's own routing errors are JSON too
    assert_json_error(classifier.get("/no/such/path"), 404, "not_found")


def test_413_body_over_limit(classifier):
    # the fixture sets MAX_BODY_BYTES to 2 MiB
    res = classifier.post(b"\xff" * (MAX_BODY + 1))
    assert_json_error(res, 413, "payload_too_large")
    assert str(MAX_BODY) in res.json["error"]["message"]
    # at the limit it is read (and is not an image)
    assert_json_error(classifier.post(b"\xff" * MAX_BODY), 400, "invalid_image")


def test_413_pixel_count_over_limit(classifier):
    bomb = png_bomb(3000, 3000)  # 9 Mpx against MAX_PIXELS=4 Mpx
    assert len(bomb) < 100_000
    assert_json_error(classifier.post(bomb, "image/png"), 413, "image_too_large")
    # and a bomb beyond PIL's own 2x threshold is a 413 too, not a 500
    assert_json_error(classifier.post(png_bomb(10000, 10000), "image/png"), 413, "image_too_large")


def test_415s(classifier):
    assert_json_error(classifier.post(b"hello", "text/plain"), 415, "unsupported_media_type")
    gif = io.BytesIO()
    Image.open(io.BytesIO(photo_bytes("flower.jpg"))).save(gif, format="GIF")
    assert_json_error(classifier.post(gif.getvalue(), "image/jpeg"), 415, "unsupported_image_format")


def test_429_when_queue_is_full_with_default_limits(make_function):
    # default QUEUE_SIZE (16) and BATCH_SIZE (8): at most 16 waiting + 8 in the model;
    # the rest are quick 429s with Retry-After
    defaults = Settings()
    assert (defaults.queue_size, defaults.batch_size) == (16, 8)
    # the default WORKER_THREADS leaves room for a full queue and the batches being
    # run, so overload is answered 429 instead of waiting in waitress's own queue
    assert defaults.threads >= defaults.queue_size + 2 * defaults.batch_size
    gate = threading.Event()  # the model is busy until every request has arrived
    fn = make_function(StandIn(predict_gate=gate), retry_after_s=3)

    def release_when_overloaded():
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and fn.runtime.inflight + len(fn.events("inference")) < 48:
            time.sleep(0.01)
        gate.set()

    threading.Thread(target=release_when_overloaded, daemon=True).start()
    responses = fn.concurrently([lambda i=i: fn.post(b"x" * (i + 1)) for i in range(48)], workers=48)
    rejected = [r for r in responses if r.status_code == 429]
    accepted = [r for r in responses if r.status_code == 200]
    assert len(accepted) + len(rejected) == 48
    assert len(rejected) >= 48 - 16 - 8
    for res in rejected:
        assert_json_error(res, 429, "queue_full")
        assert res.headers["Retry-After"] == "3"
    assert max(len(batch) for batch in fn.handler.batches) <= 8
    lines = fn.events("inference")
    assert len(lines) == 48
    assert sorted(line["status"] for line in lines) == sorted(r.status_code for r in responses)
    assert all(line["error"] == "queue_full" and line["level"] == "WARNING"
               for line in lines if line["status"] == 429)


def test_503_while_loading(make_function):
    gate = threading.Event()
    fn = make_function(StandIn(load_gate=gate), load=False)
    loader = fn.load_in_background()
    try:
        body = assert_json_error(fn.post(b"x"), 503, "not_ready")
        assert "not loaded" in body["error"]["message"]
        ready = fn.get("/ready")
        assert ready.status_code == 503 and ready.json == {"status": "starting"}
        assert fn.get("/").json["ready"] is False
        [line] = fn.events("inference")
        assert line["status"] == 503 and line["level"] == "ERROR" and line["error"] == "not_ready"
    finally:
        gate.set()
    loader.join(10)
    assert fn.get("/ready").status_code == 200
    assert fn.post(b"x").status_code == 200


def test_504_inference_timeout(make_function):
    gate = threading.Event()  # predict() never returns while the request waits
    fn = make_function(StandIn(predict_gate=gate), inference_timeout_ms=200)
    started = time.monotonic()
    try:
        assert_json_error(fn.post(b"x", headers={"X-Request-Id": "slow-one"}), 504, "inference_timeout")
        assert 0.2 <= time.monotonic() - started < 0.9
    finally:
        gate.set()
    [line] = fn.lines_for("slow-one")
    assert line["status"] == 504 and line["level"] == "ERROR" and line["error"] == "inference_timeout"


def test_500_is_json_without_trace_and_trace_is_logged(standin):
    body = assert_json_error(standin.post(b"boom"), 500, "internal_error")
    assert "blew up" not in json.dumps(body)
    assert standin.post(b"fine").status_code == 200  # still serving
    line = standin.events("inference")[0]
    assert line["status"] == 500 and line["level"] == "ERROR" and line["error"] == "internal_error"
    assert "ValueError: model blew up" in line["trace"]


# -- a handler exception anywhere in the request path ------------------------
# A 500 whose JSON body carries no trace and no exception text, the trace in the
# (single) log line, and the function keeps serving. The stand-in's exception
# messages carry a fake secret and a newline, so leaking them would show.
@pytest.mark.parametrize("body,where,exc_type", [
    (b"preboom", "preprocess", "RuntimeError"),
    (b"boom", "predict", "ValueError"),
    (b"postboom", "postprocess", "KeyError"),
    (b"unjson", "postprocess returns a body json cannot encode", "TypeError"),
    (b"logboom", "log_fields", "RuntimeError"),
])
def test_a_fault_is_a_json_500_with_the_trace_only_in_the_log(make_function, body, where, exc_type):
    fn = make_function(batch_delay_ms=100)
    rid = f"fault-{body.decode()}-{uuid.uuid4().hex[:6]}"
    res = fn.post(body, headers={"X-Request-Id": rid})
    payload = assert_json_error(res, 500, "internal_error")
    assert payload["error"]["message"] == "internal server error"
    for leak in (SECRET, exc_type, "second line", "handler.py", "Traceback"):
        assert leak not in res.text, (where, leak)
    found = fn.lines_for(rid)
    assert len(found) == 1, found
    line = found[0]
    assert line["status"] == 500 and line["level"] == "ERROR" and line["error"] == "internal_error"
    assert "Traceback" in line["trace"] and exc_type in line["trace"], line["trace"]
    raw = [r for r in fn.raw_lines if rid in r]
    assert len(raw) == 1 and "\n" not in raw[0]  # the multi-line trace is escaped into one line
    assert fn.post(b"fine").status_code == 200  # still serving


def post_as_one_batch(fn, gate: threading.Event, ids: list, bodies: list) -> list:
    """POST `bodies` (with `ids`) so that they share one batch: a first request holds
    the model (the stand-in waits on `gate`) until all of them are queued."""
    first = threading.Thread(target=fn.post, args=(b"first",))
    first.start()
    while not fn.handler.batches:
        time.sleep(0.005)

    def release_when_queued():
        while fn.runtime.queue_depth() < len(bodies):
            time.sleep(0.005)
        gate.set()

    threading.Thread(target=release_when_queued, daemon=True).start()
    responses = fn.concurrently([lambda rid=rid, body=body: fn.post(body, headers={"X-Request-Id": rid})
                                 for rid, body in zip(ids, bodies)], workers=len(bodies))
    first.join(10)
    return responses


def test_a_batch_that_fails_fails_only_its_own_members_and_each_is_logged(make_function):
    """predict() raising for a batch: the request that makes it fail gets a JSON 500,
    its batchmates are re-run without it and answered (poison isolation); each
    request has one line, and requests in other batches are unaffected."""
    gate = threading.Event()
    fn = make_function(StandIn(predict_gate=gate), batch_delay_ms=100)
    ids = [f"batchmate-{i}-{uuid.uuid4().hex[:6]}" for i in range(4)]
    bodies = [b"boom"] + [b"ok-%d" % i for i in range(3)]
    responses = post_as_one_batch(fn, gate, ids, bodies)
    assert responses[0].status_code == 500
    for res in responses:
        assert res.status_code in (200, 500)
        if res.status_code == 500:
            assert_json_error(res, 500, "internal_error")
    for rid, res in zip(ids, responses):
        found = fn.lines_for(rid)
        assert len(found) == 1 and found[0]["status"] == res.status_code
    # the culprit shared a forward pass with the others, and only the culprit failed
    assert sorted(fn.handler.batches[1]) == sorted(bodies)
    assert [res.status_code for res in responses] == [500, 200, 200, 200]
    assert fn.post(b"after").status_code == 200


def test_preprocessed_in_the_batch_worker_a_bad_input_fails_alone(make_function):
    """preprocess_in_batch_worker: requests queue raw and the worker preprocesses
    them; a client mistake (400) and a preprocess fault (500) in the same batch fail
    alone, each with its one line, and the rest share one forward pass."""
    gate = threading.Event()
    handler = StandIn(predict_gate=gate)
    handler.preprocess_in_batch_worker = True
    fn = make_function(handler, batch_delay_ms=100, batch_workers=1)
    ids = [f"worker-pre-{i}-{uuid.uuid4().hex[:6]}" for i in range(4)]
    bodies = [b"bad input", b"preboom", b"ok-1", b"ok-2"]
    responses = post_as_one_batch(fn, gate, ids, bodies)
    assert [res.status_code for res in responses] == [400, 500, 200, 200]
    assert_json_error(responses[0], 400, "invalid_input")
    assert_json_error(responses[1], 500, "internal_error")
    assert SECRET not in responses[1].text
    lines = [fn.lines_for(rid) for rid in ids]
    assert all(len(found) == 1 for found in lines), lines
    assert "preprocess failed" in lines[1][0]["trace"]
    # the good two shared one pass, without the failed ones, and say what the batch's preprocessing took
    assert sorted(fn.handler.batches[1]) == [b"ok-1", b"ok-2"]
    assert lines[2][0]["batch_size"] == 2 and lines[2][0]["preprocess_ms"] >= 0
    assert fn.runtime.batcher.stats.batch_failures == 0
    assert fn.post(b"after").status_code == 200


def test_repeated_faults_do_not_wedge_the_batcher(make_function):
    """50 failing batches in a row, then normal traffic is served normally."""
    fn = make_function(batch_delay_ms=100)
    statuses = [r.status_code for r in fn.concurrently([lambda: fn.post(b"boom")] * 50, workers=8)]
    assert statuses == [500] * 50
    statuses = [r.status_code for r in fn.concurrently([lambda: fn.post(b"ok")] * 16, workers=8)]
    assert statuses == [200] * 16
    for line in fn.lines():
        json.dumps(line)
    assert len(fn.events("inference")) == 66
