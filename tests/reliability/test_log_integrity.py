"""Log integrity: 16-way concurrent mixed traffic for a fixed count gives exactly
that many inference lines, with unique ids, all parseable, none split or
interleaved, including lines over 64 KiB.

stdout is read through a pipe, line by line, as the of-watchdog does
(FunctionProcess). The stand-in adds a field of N characters for a
body b"big:N"; the field mixes quotes, backslashes, newlines, tabs and non-ASCII
so that it must be escaped, and the test compares it character for character:
a line that was split, interleaved with another or cut would not match.
"""
import concurrent.futures
import json
import random
import threading
import uuid

import pytest
import requests

from support.functions.standin.handler import blob

N_REQUESTS = 400


# (method, path, body, expected status, blob size)
KINDS = [
    ("POST", "/", b"ok", 200, 0),
    ("POST", "/", b"big:100000", 200, 100_000),   # ~120 KB line after escaping
    ("POST", "/", b"big:70000", 200, 70_000),     # just over 64 KiB
    ("POST", "/", b"big:400000", 200, 400_000),   # ~0.5 MB
    ("POST", "/", b"bad input", 400, 0),
    ("POST", "/", b"preboom", 500, 0),
    ("POST", "/nope", b"x", 404, 0),
    ("PUT", "/", b"x", 405, 0),
]


@pytest.fixture(scope="module")
def fn(function_process):
    return function_process("standin", env={"WORKER_THREADS": "16"})


def test_concurrent_mixed_traffic_gives_exactly_one_whole_line_per_request(fn):
    rng = random.Random(7)
    plan = [(f"li-{i}-{uuid.uuid4().hex[:8]}", *rng.choice(KINDS)) for i in range(N_REQUESTS)]
    before_raw = len(fn.raw_lines)
    session_local = threading.local()

    def send(item):
        rid, method, path, body, _, _ = item
        if not hasattr(session_local, "s"):
            session_local.s = requests.Session()  # keep-alive, like the watchdog's proxy
        res = session_local.s.request(method, fn.url + path, data=body, timeout=60,
                                      headers={"X-Request-Id": rid,
                                               "Content-Type": "application/octet-stream"})
        return rid, res.status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = dict(pool.map(send, plan))
    expected = {rid: status for rid, _, _, _, status, _ in plan}
    assert results == expected

    lines = fn.wait_for_lines("inference", N_REQUESTS, timeout=30)
    raw = fn.raw_lines[before_raw:]
    parsed = [json.loads(r) for r in raw]  # every raw line is exactly one JSON object
    inference = [p for p in parsed if p["event"] == "inference"]
    assert len(inference) == N_REQUESTS == len(lines)
    ids = [p["request_id"] for p in inference]
    assert len(set(ids)) == N_REQUESTS and set(ids) == set(expected)
    sizes = {rid: size for rid, _, _, _, _, size in plan}
    long_lines = 0
    for text, line in zip(raw, parsed):
        if line["event"] != "inference":
            continue
        rid = line["request_id"]
        assert line["status"] == expected[rid]
        assert text.count('"request_id"') == 1 and text.startswith("{") and text.endswith("}")
        if sizes[rid]:
            assert line["blob"] == blob(sizes[rid]), rid
            long_lines += len(text.encode()) > 64 * 1024
        else:
            assert "blob" not in line
    assert long_lines >= N_REQUESTS // 4  # 3 of 8 kinds are over 64 KiB
