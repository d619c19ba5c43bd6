"""The Loki backend against a real local HTTP server: what it sends, what it accepts,
and how it fails."""

import socket

import pytest

from logslo import queries
from logslo.loki_backend import LokiBackend, LokiError

QUERY = queries.latency_quantile("classifier", 0.99, 3600, by=("model_version",))


def ok(data):
    return 200, {"status": "success", "data": data}


def test_vector_answer_becomes_one_value_per_label_set(fake_loki):
    loki = fake_loki(lambda path, params: ok({"resultType": "vector", "result": [
        {"metric": {"model_version": "v2"}, "value": [1700000000, "81.5"]},
        {"metric": {"model_version": "v1"}, "value": [1700000000, "12"]},
    ]}))
    got = LokiBackend(loki.url).instant(QUERY, 1700000000)
    assert got == {(("model_version", "v2"),): 81.5, (("model_version", "v1"),): 12.0}
    [request] = loki.requests
    assert request["path"] == "/loki/api/v1/query"
    assert request["params"] == {"query": QUERY.render(), "time": "1700000000"}


def test_fractional_evaluation_time_is_sent_as_float_seconds(fake_loki):
    loki = fake_loki(lambda path, params: ok({"resultType": "vector", "result": []}))
    LokiBackend(loki.url).instant(QUERY, 1700000000.25)
    assert loki.requests[0]["params"]["time"] == "1700000000.25"


def test_empty_answer_is_an_empty_vector(fake_loki):
    loki = fake_loki(lambda path, params: ok({"resultType": "vector", "result": []}))
    assert LokiBackend(loki.url).instant(QUERY, 1) == {}


def test_matrix_answer_from_query_range(fake_loki):
    loki = fake_loki(lambda path, params: ok({"resultType": "matrix", "result": [
        {"metric": {}, "values": [[1700000100, "1.5"], [1700000400, "2"]]}]}))
    got = LokiBackend(loki.url).range(QUERY, 1700000000, 1700000400, 300)
    assert got == {(): [(1700000100.0, 1.5), (1700000400.0, 2.0)]}
    [request] = loki.requests
    assert request["path"] == "/loki/api/v1/query_range"
    assert request["params"] == {"query": QUERY.render(), "start": "1700000000", "end": "1700000400", "step": "300"}


def test_scalar_answer(fake_loki):
    loki = fake_loki(lambda path, params: ok({"resultType": "scalar", "result": [1, "0.5"]}))
    assert LokiBackend(loki.url).instant(QUERY, 1) == {(): 0.5}


@pytest.mark.parametrize("answer,message", [
    ((200, {"status": "error", "errorType": "bad_data", "error": "parse error at line 1"}),
     "answered an error.*bad_data parse error at line 1"),
    ((400, b"parse error : syntax error: unexpected IDENTIFIER"), "HTTP 400.*unexpected IDENTIFIER"),
    (ok({"resultType": "streams", "result": []}), "'streams' to a metric query"),
    ((200, b"<html>proxy login</html>"), "did not answer JSON"),
], ids=["status-error", "http-error", "log-streams", "not-json"])
def test_a_bad_answer_is_an_error_that_says_why(fake_loki, answer, message):
    loki = fake_loki(lambda path, params: answer)
    with pytest.raises(LokiError, match=message):
        LokiBackend(loki.url).instant(QUERY, 1)


def test_unreachable_loki_says_so():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(LokiError, match="unreachable.*LOKI_URL"):
        LokiBackend(f"http://127.0.0.1:{port}", timeout_s=2).instant(QUERY, 1)


def test_slow_loki_times_out(fake_loki):
    loki = fake_loki(lambda path, params: ok({"resultType": "vector", "result": []}), delay_s=2)
    with pytest.raises(LokiError, match="unreachable.*timeout 0.3s"):
        LokiBackend(loki.url, timeout_s=0.3).instant(QUERY, 1)


def test_tenant_and_credentials_headers(fake_loki):
    loki = fake_loki(lambda path, params: ok({"resultType": "vector", "result": []}))
    LokiBackend(loki.url + "/", tenant="team-ml", username="u", password="p").instant(QUERY, 1)
    headers = loki.requests[0]["headers"]
    assert headers["x-scope-orgid"] == "team-ml"
    assert headers["authorization"] == "Basic dTpw"


def test_log_query_is_read_in_pages_without_losing_or_repeating_lines(fake_loki, monkeypatch):
    """The comparison reads every request of a version: pages of PAGE lines, `direction=forward`,
    the next page from the last line's nanosecond, where several lines share one timestamp."""
    import json as _json

    from logslo import loki_backend
    monkeypatch.setattr(loki_backend, "PAGE", 4)
    base = 1_700_000_000 * 10**9
    # 11 lines, three pairs sharing a nanosecond, one of them across a page boundary
    stamps = [base + d for d in (1, 2, 2, 3, 4, 4, 5, 6, 6, 7, 8)]
    lines = [_json.dumps({"timestamp": "2023-11-14T22:13:20.000Z", "event": "inference", "n": i, "latency_ms": i})
             for i in range(len(stamps))]

    def answer(path, params):
        start, end, limit = int(params["start"]), int(params["end"]), int(params["limit"])
        assert params["direction"] == "forward" and path.endswith("/query_range")
        page = [[str(t), line] for t, line in zip(stamps, lines) if start <= t < end][:limit]
        return ok({"resultType": "streams", "result": [{"stream": {"app": "classifier"}, "values": page}]})

    loki = fake_loki(answer)
    logs = queries.version_requests("classifier", "v1")
    got = list(LokiBackend(loki.url).lines(logs, 1_699_999_999, 1_700_000_001))
    assert [int(f["n"]) for f in got] == list(range(len(lines)))
    assert len(loki.requests) >= 3 and loki.requests[0]["params"]["query"] == logs.render()


def test_a_metric_answer_to_a_log_query_is_an_error(fake_loki):
    loki = fake_loki(lambda path, params: ok({"resultType": "vector", "result": []}))
    with pytest.raises(LokiError, match="log query"):
        list(LokiBackend(loki.url).lines(queries.version_requests("classifier", "v1"), 0, 1))
