"""The Loki stand-in is faithful: LokiBackend through it gives the numbers a real Loki
answered in the fixtures, its JSON is Loki's to the byte where Loki's is recorded, and a
log query read in many pages gives the very lines FileBackend reads from the file."""

import json
import urllib.error
import urllib.parse
import urllib.request

import pytest

from fixture_catalog import INSTANT, RANGE
from logslo import loki_backend, queries
from logslo.file_backend import FileBackend
from logslo.logfile import parse_rfc3339_ns
from logslo.logql import LabelFilter
from logslo.loki_backend import LokiBackend, LokiError
from logslo.vectors import label_set
from loki_standin import LogQLError, LokiStandIn, go_float, loki_time, parse_logql

F = "classifier"
NS = 1_000_000_000


def loki_vector(response):
    return {label_set(s["metric"]): float(s["value"][1]) for s in response["data"]["result"]}


def loki_matrix(response):
    return {label_set(s["metric"]): [(float(t), float(v)) for t, v in s["values"]]
            for s in response["data"]["result"]}


def by_metric(response):
    """A response with its series in one order (Loki's own order is its business)."""
    data = response["data"]
    return {"status": response["status"], "resultType": data["resultType"],
            "result": sorted(data["result"], key=lambda s: sorted(s["metric"].items()))}


def get(url, path, **params):
    """(status, content type, body) of a raw request: what went over the wire."""
    try:
        with urllib.request.urlopen(f"{url}{path}?{urllib.parse.urlencode(params)}", timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


@pytest.fixture(scope="module")
def standin(fixture_log):
    with LokiStandIn(fixture_log) as server:
        yield server
    assert not server.errors


@pytest.fixture(scope="module")
def shifted_standin(shifted_log):
    """The fixture log as metric-answers.json was recorded: every timestamp moved later."""
    with LokiStandIn(shifted_log) as server:
        yield server
    assert not server.errors


# -- the LogQL it reads --------------------------------------------------------------------

PACKAGE_QUERIES = {
    **INSTANT, **RANGE,
    "status_ratio_4xx": queries.status_ratio(F, 3600, 400, 500, by=("model_version",)),
    "class_share_v2": queries.class_share(F, 3600, offset_s=600, version="v2"),
    "value_bins_0": queries.value_bins(F, "prediction_mean", (0.5, 1.5), 3600)[1],
    "deployments": queries.deployments(F, 86400),
    "version_requests": queries.version_requests(F, "v1.3.0"),
    "max_latency": queries.RangeAggregation("max_over_time", queries.inference_logs(F, unwrap="latency_ms"), 300,
                                            by=()),
}


@pytest.mark.parametrize("name", sorted(PACKAGE_QUERIES))
def test_every_query_the_package_writes_parses_back_to_itself(name):
    query = PACKAGE_QUERIES[name]
    assert parse_logql(query.render()) == query
    assert parse_logql(query.bare().render()) == query.bare()


def test_an_unknown_function_is_loki_s_own_parse_error(metric_answers):
    recorded = metric_answers["queries"]["bad_query_unknown_function"]
    with pytest.raises(LogQLError) as caught:
        parse_logql(recorded["query"])
    assert str(caught.value) == recorded["body"]


def test_what_it_does_not_evaluate_is_refused_not_guessed():
    with pytest.raises(LogQLError, match="label_format"):
        parse_logql('sum by (bin) (count_over_time({app="x"} | json | __error__="" | label_format bin=`a` [1h]))')
    with pytest.raises(LogQLError, match="line filters"):
        parse_logql('{app="x"} |= "error"')


def test_numbers_and_times_are_printed_as_loki_prints_them():
    assert [go_float(v) for v in (4353.0, 69.1126000000002, 1e-05, 1e16, -0.5, float("inf"))] == \
        ["4353", "69.1126000000002", "0.00001", "10000000000000000", "-0.5", "+Inf"]
    assert loki_time(1796635620 * NS) == 1796635620 and loki_time(1796635620 * NS + 250_000_000) == 1796635620.25


# -- the same numbers as the real Loki -------------------------------------------------------


@pytest.mark.parametrize("name", sorted(INSTANT))
def test_instant_answers_are_the_real_loki_s(answers, standin, name):
    got = LokiBackend(standin.url, timeout_s=10).instant(INSTANT[name], answers["instant_time"])
    assert got == loki_vector(answers["queries"][name]["response"])


def test_range_answer_is_the_real_loki_s_within_the_range(answers, standin):
    item = answers["range"]["p99_latency_5m_step_300s"]
    got = LokiBackend(standin.url, timeout_s=10).range(RANGE["p99_latency_5m_step_300s"], item["start"], item["end"],
                                                       item["step"])[()]
    expected = loki_matrix(item["response"])[()]
    assert [t for t, _ in got] == [t for t, _ in expected]
    # the step Loki adds past `end` is the file backend's known difference (test_slo_fixtures)
    within = [(t, v) for t, v in expected if t <= item["end"]]
    assert got[: len(within)] == within


AGGREGATES = ("requests_by_version_status", "latency_over_50ms_by_version", "class_mix_by_version",
              "p99_latency_by_version", "latency_bins_1ms_by_version", "latency_bins_5ms_by_version",
              "top1_prob_bins_by_version")


@pytest.mark.parametrize("name", AGGREGATES)
def test_aggregate_answers_are_the_real_loki_s_json(metric_answers, shifted_standin, name):
    """Not only the same numbers: the same JSON, numbers as the same strings."""
    recorded = metric_answers["queries"][name]
    status, content_type, body = get(shifted_standin.url, "/loki/api/v1/query", query=recorded["query"],
                                     time=metric_answers["instant_time"])
    assert (status, content_type) == (recorded["http_status"], recorded["content_type"])
    assert by_metric(json.loads(body)) == by_metric(recorded["response"])


def test_range_metric_answer_is_the_real_loki_s_json(metric_answers, shifted_standin):
    recorded = metric_answers["ranges"]["requests_by_version_5m_steps"]
    status, _, body = get(shifted_standin.url, "/loki/api/v1/query_range", query=recorded["query"],
                          **recorded["params"])
    assert status == 200 and by_metric(json.loads(body)) == by_metric(recorded["response"])


def test_log_query_answers_the_real_loki_s_lines(metric_answers, shifted_standin):
    """Every line, at its nanosecond, the watchdog line included, one stream per request."""
    recorded = metric_answers["ranges"]["lines_incremental_last_2m"]
    status, _, body = get(shifted_standin.url, "/loki/api/v1/query_range", query=recorded["query"],
                          **recorded["params"])
    got, expected = json.loads(body)["data"], recorded["response"]["data"]
    assert status == 200 and got["resultType"] == expected["resultType"] == "streams"

    def values(data):
        return sorted(tuple(value) for stream in data["result"] for value in stream["values"])
    assert values(got) == values(expected) and len(values(got)) == 120
    assert len(got["result"]) == len(expected["result"])


def test_a_limit_above_max_entries_is_loki_s_400(metric_answers, shifted_standin):
    recorded = metric_answers["ranges"]["lines_over_max_entries_limit"]
    status, content_type, body = get(shifted_standin.url, "/loki/api/v1/query_range", query=recorded["query"],
                                     **recorded["params"])
    assert (status, content_type, body) == (recorded["http_status"], recorded["content_type"], recorded["body"])


def test_a_bad_query_is_loki_s_400(metric_answers, shifted_standin):
    recorded = metric_answers["queries"]["bad_query_unknown_function"]
    status, content_type, body = get(shifted_standin.url, "/loki/api/v1/query", query=recorded["query"],
                                     time=metric_answers["instant_time"])
    assert (status, content_type, body) == (recorded["http_status"], recorded["content_type"], recorded["body"])


# -- the same lines as the file, read in pages --------------------------------------------


def test_lines_read_in_many_pages_are_the_file_s(answers, standin, fixture_log, monkeypatch):
    monkeypatch.setattr(loki_backend, "PAGE", 500)
    end = answers["instant_time"]
    logs = queries.version_requests(F, "v1.2.1")
    before = standin.counts["/loki/api/v1/query_range"]
    got = list(LokiBackend(standin.url, timeout_s=10).lines(logs, end - 3600, end))
    expected = list(FileBackend(fixture_log).lines(logs, end - 3600, end))
    assert len(expected) == 3867 and got == expected
    assert standin.counts["/loki/api/v1/query_range"] - before == 8  # 7 full pages of 500, then 367


def test_lines_over_several_5000_line_pages_with_shared_nanoseconds(loki_standin, tmp_path):
    """At Loki's own page size: 12,000 lines, ten to a millisecond, pages cut inside a millisecond."""
    path = tmp_path / "busy.jsonl"
    with open(path, "w") as out:
        for i in range(12_000):
            ms = 1_000 + i // 10
            out.write(json.dumps({"timestamp": f"2026-11-21T04:00:{ms // 1000:02d}.{ms % 1000:03d}Z",
                                  "event": "inference", "function": F, "model_version": "v2" if i % 7 else "v1",
                                  "status": 200, "latency_ms": 10 + i % 37, "n": i}) + "\n")
    loki = loki_standin(path)
    start = parse_rfc3339_ns("2026-11-21T04:00:00Z") / NS
    logs = queries.version_requests(F, "v2")
    got = list(LokiBackend(loki.url, timeout_s=20).lines(logs, start, start + 60))
    expected = list(FileBackend(str(path)).lines(logs, start, start + 60))
    # the same lines, none lost or repeated, in time order (within one nanosecond Loki keeps
    # no file order, and the client orders by line)
    assert len(expected) > 10_000 and sorted(f["n"] for f in got) == sorted(f["n"] for f in expected)
    assert [f["timestamp"] for f in got] == [f["timestamp"] for f in expected]
    assert loki.counts["/loki/api/v1/query_range"] == 3
    assert {r["params"]["limit"] for r in loki.requests} == {"5000"}


# -- a log that grows ----------------------------------------------------------------------


def test_the_log_is_read_as_it_grows(loki_standin, fixture_log, tmp_path):
    lines = open(fixture_log, encoding="utf-8").read().splitlines(keepends=True)
    path = tmp_path / "growing.jsonl"
    path.write_text("".join(lines[:1000]))
    loki = loki_standin(path)
    backend = LokiBackend(loki.url, timeout_s=10)
    logs = queries.inference_logs(F)
    start, end = parse_rfc3339_ns("2026-11-21T03:00:00Z") / NS, parse_rfc3339_ns("2026-11-21T05:00:00Z") / NS

    def count():
        return len(list(backend.lines(logs, start, end)))
    first = count()
    assert first == len(list(FileBackend(str(path)).lines(logs, start, end)))
    with open(path, "a", encoding="utf-8") as out:
        out.writelines(lines[1000:2000])
        out.write(lines[2000][:40])  # a line being written: not served until its newline
        out.flush()
        grown = count()
        assert grown == len(list(FileBackend(str(path)).lines(logs, start, end))) > first
        out.write(lines[2000][40:])
    assert count() == grown + 1
    path.write_text("".join(lines[:10]))  # rotated: a new, shorter file is read from its start
    assert count() == len(list(FileBackend(str(path)).lines(logs, start, end))) < first


def test_loki_s_defaults_backward_and_100_lines(answers, standin):
    at = answers["instant_time"]
    status, _, body = get(standin.url, "/loki/api/v1/query_range",
                          query=queries.inference_logs(F).render(), start=at - 3600, end=at)
    times = [int(v[0]) for s in json.loads(body)["data"]["result"] for v in s["values"]]
    assert status == 200 and len(times) == 100
    newest = sorted(FileBackend(standin.log.path).entries(queries.inference_logs(F), (at - 3600) * NS - 1,
                                                          at * NS - 1), key=lambda e: e.time_ns)[-100:]
    assert sorted(times) == [e.time_ns for e in newest]


def test_a_log_query_as_an_instant_query_is_refused(standin):
    with pytest.raises(LokiError, match="HTTP 400.*range query type") as caught:
        LokiBackend(standin.url, timeout_s=5).instant(queries.version_requests(F, "v1"), 1796531040)
    assert caught.value.kind == "refused"


def test_requests_are_counted_by_path(loki_standin, fixture_log):
    loki = loki_standin(fixture_log)
    backend = LokiBackend(loki.url, timeout_s=5, tenant="team-ml")
    backend.instant(INSTANT["requests_1h"], 1796531040)
    backend.instant(INSTANT["rps_5m"], 1796531040)
    list(backend.lines(queries.version_requests(F, "nope"), 1796531000, 1796531040))
    assert get(loki.url, "/ready") == (200, "text/plain; charset=utf-8", "ready\n")
    assert loki.counts == {"/loki/api/v1/query": 2, "/loki/api/v1/query_range": 1, "/ready": 1}
    assert loki.requests[0]["params"] == {"query": INSTANT["requests_1h"].render(), "time": "1796531040"}
    assert loki.requests[0]["headers"]["x-scope-orgid"] == "team-ml"


def test_a_filter_the_package_never_writes_still_has_the_file_s_semantics(answers, standin, fixture_log):
    logs = queries.inference_logs(F, LabelFilter("latency_ms", ">", 50), LabelFilter("status", "!=", "200"))
    end = answers["instant_time"]
    got = list(LokiBackend(standin.url, timeout_s=10).lines(logs, end - 3600, end))
    assert got and got == list(FileBackend(fixture_log).lines(logs, end - 3600, end))
