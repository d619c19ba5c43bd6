"""Missing, partial or failed data from Loki is an error that says which fault it was.

Every fault is a real network behaviour of the Loki stand-in (a real server, the client
never patched): LokiBackend must raise LokiError with the right `kind`, a message naming
the fault (Loki's own text where it sent one), within a bounded time, and must never hand
back a truncated answer as if it were whole. A canary watch reads these kinds: none of
them may promote or roll back.
"""

import email.utils
import json
import re
import socket
import time

import pytest

from logslo import loki_backend, queries
from logslo.file_backend import FileBackend
from logslo.logfile import parse_rfc3339_ns
from logslo.loki_backend import KINDS, LokiBackend, LokiError
from loki_standin import FAULT_ANSWERS, Fault, limit_text

F = "classifier"
NS = 1_000_000_000
TIMEOUT_S = 0.5
AT = 1795236075  # answers.json instant_time: the fixture log's hour ends here
START = AT - 3600
COUNT = queries.requests(F, 3600)
LOGS = queries.version_requests(F, "v1.2.1")
QUERY_RANGE = "/loki/api/v1/query_range"


@pytest.fixture
def loki(loki_standin, fixture_log):
    return loki_standin(fixture_log)


@pytest.fixture
def backend(loki):
    return LokiBackend(loki.url, timeout_s=TIMEOUT_S)


def failure(call, bound_s=3.0) -> LokiError:
    """The LokiError the call raised, checked to have come within bound_s."""
    started = time.monotonic()
    with pytest.raises(LokiError) as caught:
        call()
    elapsed = time.monotonic() - started
    assert elapsed < bound_s, f"took {elapsed:.2f}s to fail"
    return caught.value


def test_the_kinds_are_the_watch_contract_s():
    assert KINDS == ("unreachable", "timeout", "rate_limited", "server_error", "refused", "bad_answer")
    with pytest.raises(ValueError):
        LokiError("x", "flaky")


def test_without_a_fault_the_same_calls_answer(loki, backend):
    """The control: every call the fault tests make succeeds when nothing is wrong."""
    assert backend.instant(COUNT, AT) == {(): 4353.0}
    assert len(list(backend.lines(LOGS, START, AT))) == 3867
    assert loki.counts == {"/loki/api/v1/query": 1, QUERY_RANGE: 1}


# -- each fault, its kind and its words ---------------------------------------------------

HTTP_FAULTS = [
    ("429", "rate_limited", 429, r"HTTP 429 \(rate limited, retry after 7s\).*too many outstanding requests"),
    ("500", "server_error", 500, r"HTTP 500 \(server error\).*: empty ring$"),
    ("502", "server_error", 502, r"HTTP 502 \(server error\).*502 Bad Gateway"),
    ("503", "server_error", 503, r"HTTP 503 \(server error\).*503 Service Temporarily Unavailable"),
]


@pytest.mark.parametrize("fault,kind,status,message", HTTP_FAULTS, ids=[f[0] for f in HTTP_FAULTS])
def test_http_faults(loki, backend, fault, kind, status, message):
    loki.fault = fault
    for call in (lambda: backend.instant(COUNT, AT), lambda: list(backend.lines(LOGS, START, AT)),
                 lambda: backend.range(COUNT, START, AT, 300)):
        err = failure(call)
        assert (err.kind, err.status) == (kind, status)
        assert err.detail == " ".join(FAULT_ANSWERS[fault][2].split())  # the server's text, whole
        assert err.lines_read is None
        assert re.search(message, str(err)) and "unreachable" not in str(err), str(err)
    assert loki.counts == {"/loki/api/v1/query": 1, QUERY_RANGE: 2}  # no call was retried


def test_429_keeps_retry_after_in_seconds_or_as_a_date(loki, backend):
    loki.fault = "429=30"
    assert failure(lambda: backend.instant(COUNT, AT)).retry_after_s == 30
    loki.fault = Fault("429", retry_after=email.utils.formatdate(time.time() + 120, usegmt=True))
    assert 115 <= failure(lambda: backend.instant(COUNT, AT)).retry_after_s <= 121
    loki.fault = Fault("429", retry_after=None)
    err = failure(lambda: backend.instant(COUNT, AT))
    assert err.retry_after_s is None and "(rate limited)" in str(err)


def test_down_refuses_connections_then_listens_again_on_the_same_port(loki, backend):
    url = loki.url
    with loki.faulty("down"):
        for _ in range(2):
            err = failure(lambda: backend.instant(COUNT, AT))
            assert err.kind == "unreachable" and err.status is None
            assert "is unreachable" in str(err) and "refused" in str(err).lower() and "LOKI_URL" in str(err)
        with socket.socket() as probe:  # a real closed port, not an answer
            assert probe.connect_ex(("127.0.0.1", loki.port)) != 0
    assert loki.counts == {}  # nothing reached it
    assert loki.url == url and backend.instant(COUNT, AT) == {(): 4353.0}


def test_reset_connection_is_unreachable(loki, backend):
    loki.fault = "reset"
    err = failure(lambda: backend.instant(COUNT, AT))
    assert err.kind == "unreachable" and err.status is None
    assert "is unreachable" in str(err) and ("reset" in str(err).lower() or "closed" in str(err).lower()), str(err)
    assert loki.counts == {"/loki/api/v1/query": 1}  # it got there: the answer was the reset


def test_unknown_host_is_unreachable():
    err = failure(lambda: LokiBackend("http://loki.invalid:3100", timeout_s=TIMEOUT_S).instant(COUNT, AT), 10)
    assert err.kind == "unreachable" and "loki.invalid" in str(err)


@pytest.mark.parametrize("fault", ["slow", "slow_body"])
def test_no_answer_within_the_timeout_is_a_timeout(loki, backend, fault):
    """`slow`: nothing comes; `slow_body`: the headers and half the body come, then nothing
    (a socket timeout while reading). Both are told apart from an unreachable Loki."""
    loki.fault = fault
    started = time.monotonic()
    err = failure(lambda: backend.instant(COUNT, AT), bound_s=TIMEOUT_S + 1.5)
    assert time.monotonic() - started >= TIMEOUT_S * 0.9  # it did wait for the answer
    assert err.kind == "timeout" and err.status is None
    assert f"timed out: no answer to {COUNT.render()!r} within 0.5s" in str(err)
    loki.fault = None
    assert backend.instant(COUNT, AT) == {(): 4353.0}


def test_limit_is_refused_with_loki_s_text(loki, backend):
    loki.fault = "limit"  # Loki run with max_entries_limit_per_query: 100
    err = failure(lambda: list(backend.lines(LOGS, START, AT)))
    assert (err.kind, err.status) == ("refused", 400)
    assert err.detail == limit_text(5000, 100)
    assert "HTTP 400 (refused the query)" in str(err) and "max entries limit per query exceeded" in str(err)
    assert backend.instant(COUNT, AT) == {(): 4353.0}  # a metric query has no lines to limit


def test_limit_above_loki_s_own_maximum_is_the_recorded_400(loki, backend, monkeypatch, fixtures_dir):
    recorded = json.loads((fixtures_dir / "metric-answers.json").read_text())["ranges"]["lines_over_max_entries_limit"]
    monkeypatch.setattr(loki_backend, "PAGE", 10000)
    err = failure(lambda: list(backend.lines(LOGS, START, AT)))
    assert (err.kind, err.status, err.detail) == ("refused", 400, recorded["body"])


def test_an_answer_that_is_not_loki_s_is_a_bad_answer(loki, backend):
    loki.fault = "html"  # a login proxy in front of Loki answers 200 with a page
    err = failure(lambda: backend.instant(COUNT, AT))
    assert err.kind == "bad_answer" and "did not answer JSON" in str(err)


@pytest.mark.parametrize("answer,message", [
    ((200, {"status": "error", "errorType": "bad_data", "error": "parse error"}), "answered an error"),
    ((200, {"status": "success", "data": {"resultType": "streams", "result": []}}), "'streams' to a metric query"),
    ((200, {"status": "success"}), "without data"),
    ((200, {"status": "success", "data": {"resultType": "vector", "result": [{"value": [1, "2"]}]}}),
     "malformed vector"),
    ((200, {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "x"]}]}}),
     "malformed vector"),
    ((200, [1, 2]), "not answer a JSON object"),
    ((200, b"<html>proxy login</html>"), "did not answer JSON"),
], ids=["status-error", "wrong-type", "no-data", "no-metric", "not-a-number", "array", "html"])
def test_bad_answers_are_bad_answer(fake_loki, answer, message):
    server = fake_loki(lambda path, params: answer)
    err = failure(lambda: LokiBackend(server.url, timeout_s=TIMEOUT_S).instant(COUNT, AT))
    assert err.kind == "bad_answer" and message in str(err), str(err)


def test_a_malformed_page_of_lines_is_a_bad_answer(fake_loki):
    server = fake_loki(lambda path, params: (200, {"status": "success", "data": {
        "resultType": "streams", "result": [{"stream": {}, "values": [["not a time", "{}"]]}]}}))
    err = failure(lambda: list(LokiBackend(server.url, timeout_s=TIMEOUT_S).lines(LOGS, START, AT)))
    assert err.kind == "bad_answer" and "malformed streams" in str(err)


@pytest.mark.parametrize("status,kind", [(400, "refused"), (401, "refused"), (404, "refused"), (429, "rate_limited"),
                                         (500, "server_error"), (504, "server_error")])
def test_http_status_decides_the_kind(fake_loki, status, kind):
    server = fake_loki(lambda path, params: (status, b"no"))
    err = failure(lambda: LokiBackend(server.url, timeout_s=TIMEOUT_S).instant(COUNT, AT))
    assert (err.kind, err.status, err.detail) == (kind, status, "no")
    assert ("credentials" in str(err)) == (status == 401)


# -- partial data --------------------------------------------------------------------------


@pytest.mark.parametrize("then,kind", [("500", "server_error"), ("502", "server_error"), ("429", "rate_limited"),
                                       ("reset", "unreachable"), ("slow", "timeout"), ("limit", "refused")])
def test_a_page_failing_after_others_raises_rather_than_truncating(loki, backend, monkeypatch, then, kind):
    monkeypatch.setattr(loki_backend, "PAGE", 500)  # 3867 lines: 8 pages
    loki.fault = Fault("fail_after_pages", pages=2, then=then)
    err = failure(lambda: list(backend.lines(LOGS, START, AT)))
    # 500 lines, then 499 new ones: a later page starts at the last line's nanosecond, read again
    assert err.kind == kind and err.lines_read == 999
    assert "page 3 of a log query failed after 999 lines were read: a partial answer" in str(err)
    assert loki.counts[QUERY_RANGE] == 3
    assert [r["fault"] for r in loki.requests] == [None, None, then]


def test_a_caller_that_loops_sees_the_first_pages_then_the_error(loki, backend, monkeypatch):
    """What `lines()` being a generator means: the lines before the failed page have been
    handed out already; a caller must discard them (a failed read is no read)."""
    monkeypatch.setattr(loki_backend, "PAGE", 500)
    loki.fault = "fail_after_pages=3"
    gathered = []
    with pytest.raises(LokiError) as caught:
        for fields in backend.lines(LOGS, START, AT):
            gathered.append(fields)
    assert len(gathered) == caught.value.lines_read == 500 + 499 + 499 < 3867


def test_fail_after_pages_spares_the_pages_before_and_instant_queries(loki, backend, monkeypatch, fixture_log):
    monkeypatch.setattr(loki_backend, "PAGE", 500)
    loki.fault = "fail_after_pages=8"  # exactly the pages this read needs
    assert backend.instant(COUNT, AT) == {(): 4353.0}
    assert list(backend.lines(LOGS, START, AT)) == list(FileBackend(fixture_log).lines(LOGS, START, AT))
    assert failure(lambda: list(backend.lines(LOGS, START, AT))).kind == "server_error"  # the 9th call


# -- stale: no error, just nothing new ----------------------------------------------------


def test_stale_serves_only_what_arrived_before_ingestion_stopped(loki_standin, fixture_log, tmp_path):
    """The log keeps growing but Loki stops ingesting: answers are fine and get no newer.
    No error is raised: whoever reads must notice that nothing new arrives."""
    lines = open(fixture_log, encoding="utf-8").read().splitlines(keepends=True)
    path = tmp_path / "growing.jsonl"
    path.write_text("".join(lines[:2000]))
    loki = loki_standin(path)
    backend = LokiBackend(loki.url, timeout_s=TIMEOUT_S)
    before = list(backend.lines(LOGS, START, AT))
    count_before = backend.instant(COUNT, AT)
    loki.fault = "stale"
    with open(path, "a", encoding="utf-8") as out:
        out.writelines(lines[2000:])
    assert list(backend.lines(LOGS, START, AT)) == before
    assert backend.instant(COUNT, AT) == count_before
    loki.fault = None
    after = list(backend.lines(LOGS, START, AT))
    assert len(after) == 3867 > len(before)
    assert backend.instant(COUNT, AT) == {(): 4353.0}


def test_stale_at_a_given_time(loki, backend):
    frozen = parse_rfc3339_ns("2026-11-21T04:11:00Z") / NS
    with loki.faulty("stale", at=frozen):
        got = list(backend.lines(LOGS, START, AT))
        assert got and max(parse_rfc3339_ns(f["timestamp"]) for f in got) <= frozen * NS
        assert backend.instant(COUNT, AT) == backend.instant(COUNT, frozen)
    assert len(list(backend.lines(LOGS, START, AT))) == 3867


def test_faults_are_restored_by_the_context_manager(loki):
    loki.fault = "503"
    with loki.faulty("fail_after_pages", pages=4, then="429"):
        assert loki.fault == Fault("fail_after_pages", pages=4, then="429")
    assert loki.fault == Fault("503")
    with pytest.raises(ValueError):
        loki.fault = "flaky"
    with pytest.raises(ValueError):
        Fault("fail_after_pages", then="stale")
