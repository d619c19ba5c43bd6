"""One JSON line per request, whatever happened, with the contract's fields."""
import uuid

import pytest

from loadkit.photos import photo_bytes, reencode
from support.classifier import MAX_BODY
from support.contract import assert_request_line
from support.functions.standin.handler import StandIn


def mixed_requests(n: int) -> list[tuple[str, bytes, str, dict, int]]:
    """(request id, body, content type, params, expected status), good and bad mixed."""
    kinds = [
        (lambda: photo_bytes("chelsea.png"), "image/png", {}, 200),
        (lambda: reencode("china.jpg", "WEBP"), "image/webp", {}, 200),
        (lambda: photo_bytes("flower.jpg"), "image/jpeg", {"topk": "3"}, 200),
        (lambda: b"garbage bytes", "image/jpeg", {}, 400),
        (lambda: b"", "image/png", {}, 400),
        (lambda: photo_bytes("rocket.jpg"), "image/jpeg", {"topk": "x"}, 400),
        (lambda: b"\0" * (MAX_BODY + 10), "application/octet-stream", {}, 413),  # oversized
        (lambda: b"{}", "text/csv", {}, 415),
    ]
    return [(f"mix-{i}-{uuid.uuid4().hex[:8]}", *kinds[i % len(kinds)]) for i in range(n)]


def test_concurrent_mixed_requests_get_exactly_one_line_each(classifier):
    cases = mixed_requests(48)

    def send(case):
        rid, body, content_type, params, _ = case
        res = classifier.post(body(), content_type, params, headers={"X-Request-Id": rid})
        return rid, res.status_code, res.headers["X-Request-Id"], res.json

    results = classifier.concurrently([lambda case=case: send(case) for case in cases], workers=16)
    expected = {rid: status for rid, _, _, _, status in cases}
    assert {rid: status for rid, status, _, _ in results} == expected
    assert all(rid == echoed for rid, _, echoed, _ in results)

    lines = [line for line in classifier.events("inference") if line["request_id"] in expected]
    assert len(lines) == len(cases)
    by_id = {line["request_id"]: line for line in lines}
    assert set(by_id) == set(expected)  # one line per request, none lost, none doubled
    bodies = {rid: body for rid, _, _, body in results}
    for rid, line in by_id.items():
        assert_request_line(line, expected[rid])
        assert line["function"] == "classifier" and line["model_name"] == "efficientnet-lite0"
        assert line["latency_ms"] > 0 and line["method"] == "POST" and line["path"] == "/"
        if line["status"] == 200:
            assert isinstance(line["top1_class"], str) and 0 < line["top1_prob"] <= 1
            assert line["batch_size"] >= 1 and line["inference_ms"] > 0
            top = bodies[rid]["predictions"][0]
            assert line["top1_class"] == top["label"]
            assert line["top1_prob"] == pytest.approx(top["probability"], abs=1e-3)
        else:
            assert line["error"] and "top1_class" not in line
            assert line["error"] == bodies[rid]["error"]["code"]  # the body's code, in the log


@pytest.mark.parametrize("body,status,level", [
    (b"fine", 200, "INFO"), (b"bad input", 400, "WARNING"), (b"preboom", 500, "ERROR"),
])
def test_level_follows_the_status(standin, body, status, level):
    rid = f"level-{status}"
    assert standin.post(body, headers={"X-Request-Id": rid}).status_code == status
    [line] = standin.lines_for(rid)
    assert line["status"] == status and line["level"] == level
    assert_request_line(line, status)
    if status == 200:
        assert (line["top1_class"], line["top1_prob"]) == ("echo", 1.0)
        assert line["batch_size"] == 1 and line["queue_ms"] >= 0 and line["inference_ms"] >= 0
        assert line["input_bytes"] == len(body) and "error" not in line
    else:
        assert "top1_class" not in line and "batch_size" not in line


def test_every_kind_of_request_gets_exactly_one_line(standin):
    """Success, client errors, routing errors, faults: one line each, none for probes."""
    calls = [("POST", "/", b"ok", 200), ("POST", "/", b"bad", 400), ("POST", "/nope", b"x", 404),
             ("PUT", "/", b"x", 405), ("DELETE", "/", b"", 405), ("POST", "/", b"preboom", 500),
             ("GET", "/", b"", 200), ("OPTIONS", "/", b"", 405), ("GET", "/ready", b"", 200),
             ("GET", "/metrics", b"", 200)]
    for i, (method, path, body, status) in enumerate(calls):
        res = standin.request(method, path, body, headers={"X-Request-Id": f"kind-{i}"})
        assert res.status_code == status, (method, path, res.data)
    lines = [line for line in standin.lines() if line["event"] in ("inference", "metadata")]
    assert [line["request_id"] for line in lines] == [f"kind-{i}" for i in range(8)]
    assert [line["status"] for line in lines] == [status for _, _, _, status in calls[:8]]
    assert [line["method"] for line in lines] == [method for method, _, _, _ in calls[:8]]


def test_metadata_read_is_a_metadata_line(standin):
    res = standin.get("/", headers={"X-Request-Id": "meta-1"})
    assert res.status_code == 200 and res.json["request_id"] == "meta-1"
    [line] = standin.lines_for("meta-1", event="metadata")
    assert line["status"] == 200 and line["level"] == "INFO" and line["message"] == "metadata"
    assert not standin.lines_for("meta-1")  # not an inference line


def test_probes_are_not_logged_but_get_an_id(standin):
    before = len(standin.raw_lines)
    res = standin.get("/ready")
    assert res.status_code == 200 and res.headers["X-Request-Id"]
    assert standin.get("/metrics").status_code == 200
    assert len(standin.raw_lines) == before
    # a POST to /ready is not a probe: it is answered and logged
    assert standin.post(b"x", path="/ready").status_code == 404
    assert len(standin.raw_lines) == before + 1


def test_tenant_is_logged_sanitised(standin):
    standin.post(b"x", headers={"X-Request-Id": "t-1", "X-Tenant-Id": 'Evil "Corp" <script>'})
    standin.post(b"x", headers={"X-Request-Id": "t-2"})
    standin.post(b"x", headers={"X-Request-Id": "t-3", "X-Tenant-Id": 'ev"il}{\\n tenant' + "T" * 500})
    assert standin.lines_for("t-1")[0]["tenant"] == "EvilCorpscript"
    assert "tenant" not in standin.lines_for("t-2")[0]
    assert standin.lines_for("t-3")[0]["tenant"] == ("evilntenant" + "T" * 500)[:64]


def test_tenant_header_is_a_setting(make_function):
    fn = make_function(tenant_header="X-Team")
    fn.post(b"x", headers={"X-Request-Id": "team", "X-Team": "blue", "X-Tenant-Id": "red"})
    assert fn.lines_for("team")[0]["tenant"] == "blue"


def test_a_request_slower_than_the_objective_says_slow(make_function):
    """`slow: true` only on lines later than LATENCY_OBJECTIVE_MS: what the Loki latency
    alerts count, the same requests as torchfaas_slow_requests_total."""
    fn = make_function(StandIn(predict_s=0.06), latency_objective_ms=40)
    fn.post(b"x", headers={"X-Request-Id": "late"})
    assert fn.lines_for("late")[0]["slow"] is True and fn.lines_for("late")[0]["latency_ms"] > 40
    fast = make_function(StandIn(), latency_objective_ms=1000)
    fast.post(b"x", headers={"X-Request-Id": "early"})
    assert "slow" not in fast.lines_for("early")[0]
    for function, expected in ((fn, 1), (fast, 0)):
        [counted] = [s for s in function.samples() if s.name == "torchfaas_slow_requests_total"]
        assert counted.value == expected


def test_model_loaded_line(standin):
    [loaded] = standin.events("model_loaded")
    assert loaded["level"] == "INFO" and loaded["function"] == "standin"
    assert (loaded["model_name"], loaded["model_version"]) == ("standin", "v-test")
    assert loaded["load_ms"] >= 0 and loaded["cold_start_ms"] >= loaded["load_ms"]
    assert loaded["warmup_ms"] >= 0


def test_model_loaded_times_the_load(make_function):
    fn = make_function(StandIn(load_s=0.3))
    loaded = fn.events("model_loaded")[0]
    assert loaded["load_ms"] >= 300 and loaded["cold_start_ms"] >= loaded["load_ms"]


def test_classifier_model_loaded_line(classifier):
    loaded = classifier.events("model_loaded")[0]
    assert loaded["load_ms"] > 0 and loaded["cold_start_ms"] >= loaded["load_ms"]
    assert loaded["backend"] in ("aoti", "eager") and loaded["model_version"].startswith("sha256-")


def test_a_failed_load_is_one_startup_failed_line_and_never_ready(make_function):
    fn = make_function(StandIn(fail_load=True), load=False)
    assert fn.load() is False
    [failed] = fn.events("startup_failed")
    assert failed["level"] == "ERROR" and failed["error"] == "RuntimeError"
    assert failed["error_message"] == "weights are corrupt" and "Traceback" in failed["trace"]
    assert not fn.events("model_loaded")
    assert fn.get("/ready").status_code == 503 and fn.get("/ready").json == {"status": "failed"}
    res = fn.post(b"x", headers={"X-Request-Id": "after-fail"})
    assert res.status_code == 503 and res.json["error"]["code"] == "not_ready"
    assert fn.lines_for("after-fail")[0]["error"] == "not_ready"


def test_a_line_with_a_huge_field_is_one_line(standin):
    from support.functions.standin.handler import blob
    res = standin.post(b"big:70000", headers={"X-Request-Id": "huge"})
    assert res.status_code == 200
    [raw] = [r for r in standin.raw_lines if '"huge"' in r]
    assert len(raw.encode()) > 64 * 1024 and raw.startswith("{") and raw.endswith("}")
    assert standin.lines_for("huge")[0]["blob"] == blob(70000)


def test_the_source_commit_is_in_get_and_the_model_loaded_line(make_function):
    """SOURCE_COMMIT (a Dockerfile build arg): what the scheduled SLO job comments on."""
    fn = make_function(source_commit="0123abc")
    assert fn.get("/").json["source_commit"] == "0123abc"
    [loaded] = [line for line in fn.lines() if line["event"] == "model_loaded"]
    assert loaded["source_commit"] == "0123abc"
    unknown = make_function()
    assert unknown.get("/").json["source_commit"] is None
    assert "source_commit" not in [line for line in unknown.lines() if line["event"] == "model_loaded"][0]
