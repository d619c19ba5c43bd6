"""A handler exception anywhere in the request path: a 500 with a JSON body that
carries no trace and no exception text, the trace in the (single) log line, and
the process keeps serving. The exception messages of the `faults` stand-in carry
a fake secret and a newline, so leaking them would show.
"""
import concurrent.futures
import json
import uuid

import pytest
from faultkit import check_json_error, wait_line
from support.function_process import FunctionProcess

SECRET = "s3cr3t-db-password"


@pytest.fixture(scope="module")
def fn(faults_build):
    with FunctionProcess(faults_build, env={"BATCH_DELAY_MS": "100"}, function_name="faults") as process:
        yield process


@pytest.mark.parametrize("body,where,exc_type", [
    (b"preboom", "preprocess", "RuntimeError"),
    (b"boom", "predict", "ValueError"),
    (b"postboom", "postprocess", "KeyError"),
    (b"unjson", "postprocess returns a body json cannot encode", "TypeError"),
    (b"logboom", "log_fields", "RuntimeError"),
])
def test_a_fault_is_a_json_500_with_the_trace_only_in_the_log(fn, body, where, exc_type):
    rid = f"fault-{body.decode()}-{uuid.uuid4().hex[:6]}"
    res = fn.post(body, "application/octet-stream", headers={"X-Request-Id": rid})
    payload = check_json_error(res.status_code, res.headers, res.content, 500, "internal_error")
    assert payload["error"]["message"] == "internal server error"
    for leak in (SECRET, exc_type, "second line", "handler.py", "Traceback"):
        assert leak not in res.text, (where, leak)
    found = wait_line(fn, rid)
    assert len(found) == 1, found
    line = found[0]
    assert line["status"] == 500 and line["level"] == "ERROR" and line["error"] == "internal_error"
    assert "Traceback" in line["trace"] and exc_type in line["trace"], line["trace"]
    raw = [r for r in fn.raw_lines if rid in r]
    assert len(raw) == 1 and "\n" not in raw[0]  # the multi-line trace is escaped into one line
    assert fn.post(b"fine", "application/octet-stream").status_code == 200  # still serving


def test_a_batch_that_fails_fails_only_its_own_members_and_each_is_logged(fn):
    """predict() raising for a batch: the batch is re-run in halves, so only the
    request that fails on its own gets a JSON 500 (poison isolation, see
    test_poison_isolation.py); each request gets one line."""
    ids = [f"batchmate-{i}-{uuid.uuid4().hex[:6]}" for i in range(4)]
    bodies = [b"boom"] + [b"ok"] * 3

    def send(pair):
        rid, body = pair
        return fn.post(body, "application/octet-stream", headers={"X-Request-Id": rid})

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(send, zip(ids, bodies)))
    assert responses[0].status_code == 500
    for res in responses:
        assert res.status_code in (200, 500)
        if res.status_code == 500:
            check_json_error(res.status_code, res.headers, res.content, 500, "internal_error")
    for rid, res in zip(ids, responses):
        found = wait_line(fn, rid)
        assert len(found) == 1 and found[0]["status"] == res.status_code
    assert fn.post(b"after", "application/octet-stream").status_code == 200


def test_repeated_faults_do_not_wedge_the_batcher(fn):
    """50 failing batches in a row, then normal traffic is served normally."""
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda i: fn.post(b"boom", "application/octet-stream").status_code,
                                 range(50)))
    assert statuses == [500] * 50
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda i: fn.post(b"ok", "application/octet-stream").status_code,
                                 range(16)))
    assert statuses == [200] * 16
    for line in fn.lines():
        json.dumps(line)
