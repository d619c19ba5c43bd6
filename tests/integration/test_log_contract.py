"""One JSON line per request on stdout, whatever happened, and nothing else."""
import concurrent.futures
import re
import uuid

import requests

from photos import photo_bytes, reencode

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
REQUIRED = {"timestamp": str, "level": str, "message": str, "event": str, "request_id": str,
            "function": str, "model_name": str, "model_version": str, "status": int,
            "latency_ms": float}
LEVELS = {2: "INFO", 4: "WARNING", 5: "ERROR"}


def mixed_requests(n: int) -> list[tuple[str, bytes, str, dict, int]]:
    """(request id, body, content type, params, expected status), good and bad mixed."""
    kinds = [
        (lambda: photo_bytes("chelsea.png"), "image/png", {}, 200),
        (lambda: reencode("china.jpg", "WEBP"), "image/webp", {}, 200),
        (lambda: photo_bytes("flower.jpg"), "image/jpeg", {"topk": "3"}, 200),
        (lambda: b"garbage bytes", "image/jpeg", {}, 400),
        (lambda: b"", "image/png", {}, 400),
        (lambda: photo_bytes("rocket.jpg"), "image/jpeg", {"topk": "x"}, 400),
        (lambda: b"\0" * (2 * 1024 * 1024 + 10), "application/octet-stream", {}, 413),  # oversized
        (lambda: b"{}", "text/csv", {}, 415),
    ]
    return [(f"mix-{i}-{uuid.uuid4().hex[:8]}", *kinds[i % len(kinds)]) for i in range(n)]


def test_concurrent_mixed_requests_get_exactly_one_line_each(classifier):
    before = len(classifier.events("inference"))
    cases = mixed_requests(48)

    def send(case):
        rid, body, content_type, params, _ = case
        res = classifier.post(body(), content_type, params, headers={"X-Request-Id": rid})
        return rid, res.status_code, res.headers["X-Request-Id"]

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(send, cases))
    expected = {rid: status for rid, _, _, _, status in cases}
    assert {rid: status for rid, status, _ in results} == expected
    assert all(rid == echoed for rid, _, echoed in results)

    lines = classifier.wait_for_lines("inference", before + len(cases))[before:]
    assert len(lines) == len(cases)
    by_id = {line["request_id"]: line for line in lines}
    assert set(by_id) == set(expected)  # one line per request, none lost, none doubled
    for rid, line in by_id.items():
        for field, kind in REQUIRED.items():
            assert isinstance(line[field], kind), (field, line)
        assert TIMESTAMP.match(line["timestamp"])
        assert line["status"] == expected[rid]
        assert line["level"] == LEVELS[line["status"] // 100]
        assert line["function"] == "classifier" and line["model_name"] == "efficientnet-lite0"
        if line["status"] == 200:
            assert isinstance(line["top1_class"], str) and 0 < line["top1_prob"] <= 1
            assert line["batch_size"] >= 1 and line["inference_ms"] > 0
        else:
            assert line["error"] and "top1_class" not in line


def test_every_stdout_line_is_json(classifier):
    lines = classifier.lines()  # json.loads on every line: raises on any stray output
    events = {line["event"] for line in lines}
    assert {"startup", "model_loaded"} <= events
    loaded = next(line for line in lines if line["event"] == "model_loaded")
    assert loaded["load_ms"] > 0 and loaded["cold_start_ms"] >= loaded["load_ms"]


def test_probes_are_not_logged_but_get_an_id(classifier):
    before = len(classifier.lines())
    res = requests.get(classifier.url + "/ready", timeout=5)
    assert res.status_code == 200 and res.headers["X-Request-Id"]
    assert requests.get(classifier.url + "/metrics", timeout=5).status_code == 200
    assert len(classifier.lines()) == before
