"""Every error status of the contract, with its JSON body, from real processes."""
import concurrent.futures
import io
import json
import time
from pathlib import Path

import pytest
import requests
from PIL import Image
from support.function_process import FunctionProcess, shrinkwrap
from photos import photo_bytes


HANDLERS = Path(__file__).parent / "handlers"


def assert_error(res, status, code):
    assert res.status_code == status, res.text
    assert res.headers["Content-Type"] == "application/json"
    body = res.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    assert body["request_id"] == res.headers["X-Request-Id"]
    assert "Traceback" not in res.text
    return body


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
    assert_error(classifier.post(data() if callable(data) else data, content_type, params), 400, code)


def test_405_and_404(classifier):
    res = requests.put(classifier.url + "/", data=b"x", timeout=5)
    assert_error(res, 405, "method_not_allowed")
    assert_error(requests.post(classifier.url + "/nope", data=b"x", timeout=5), 404, "not_found")


def test_413_body_over_limit(classifier):
    # the fixture sets MAX_BODY_BYTES to 2 MiB
    assert_error(classifier.post(b"\xff" * (2 * 1024 * 1024 + 1)), 413, "payload_too_large")


def test_413_pixel_count_over_limit(classifier):
    bomb = png_bomb(3000, 3000)  # 9 Mpx against MAX_PIXELS=4 Mpx
    assert len(bomb) < 100_000
    assert_error(classifier.post(bomb, "image/png"), 413, "image_too_large")
    # and a bomb beyond PIL's own 2x threshold is a 413 too, not a 500
    assert_error(classifier.post(png_bomb(10000, 10000), "image/png"), 413, "image_too_large")


def test_415s(classifier):
    assert_error(classifier.post(b"hello", "text/plain"), 415, "unsupported_media_type")
    gif = io.BytesIO()
    Image.open(io.BytesIO(photo_bytes("flower.jpg"))).save(gif, format="GIF")
    assert_error(classifier.post(gif.getvalue(), "image/jpeg"), 415, "unsupported_image_format")


@pytest.fixture(scope="module")
def slow_build(tmp_path_factory):
    return shrinkwrap(HANDLERS / "slow", tmp_path_factory.mktemp("slow") / "build")


def test_429_when_queue_is_full_with_default_limits(slow_build):
    # default QUEUE_SIZE (16) and BATCH_SIZE (8): at most 16 waiting + 8 in the model;
    # the default WORKER_THREADS leaves room for that, so the rest are quick 429s
    # instead of waiting in waitress's own queue
    env = {"SLOW_PREDICT_S": "0.5", "RETRY_AFTER_SECONDS": "3"}
    with FunctionProcess(slow_build, env=env) as fn:
        with concurrent.futures.ThreadPoolExecutor(48) as pool:
            responses = list(pool.map(lambda i: fn.post(b"x" * (i + 1)), range(48)))
        rejected = [r for r in responses if r.status_code == 429]
        accepted = [r for r in responses if r.status_code == 200]
        assert len(accepted) + len(rejected) == 48
        assert len(rejected) >= 48 - 16 - 8
        for res in rejected:
            assert_error(res, 429, "queue_full")
            assert res.headers["Retry-After"] == "3"


def test_503_while_loading(slow_build):
    fn = FunctionProcess(slow_build, env={"SLOW_LOAD_S": "2"}).start(wait_ready=False)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                res = fn.post(b"x")
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert_error(res, 503, "not_ready")
        assert requests.get(fn.url + "/ready", timeout=5).status_code == 503
        fn.wait_ready(30)
        assert fn.post(b"x").status_code == 200
    finally:
        fn.stop()


def test_504_inference_timeout(slow_build):
    with FunctionProcess(slow_build, env={"SLOW_PREDICT_S": "1", "INFERENCE_TIMEOUT_MS": "200"}) as fn:
        started = time.monotonic()
        assert_error(fn.post(b"x"), 504, "inference_timeout")
        assert time.monotonic() - started < 0.9


def test_500_is_json_without_trace_and_trace_is_logged(slow_build):
    with FunctionProcess(slow_build) as fn:
        body = assert_error(fn.post(b"boom"), 500, "internal_error")
        assert "blew up" not in json.dumps(body)
        assert fn.post(b"fine").status_code == 200  # still serving
        line = fn.wait_for_lines("inference", 2)[0]
        assert line["status"] == 500 and line["level"] == "ERROR" and line["error"] == "internal_error"
        assert "ValueError: model blew up" in line["trace"]
