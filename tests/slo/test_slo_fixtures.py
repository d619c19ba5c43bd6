"""The file backend reproduces every number a real Loki 3.7 answered over the same log,
and the Loki backend reads those very answers into the same numbers."""

import math

import pytest

from fake_loki import bare_json, fixture_answer
from fixture_catalog import INSTANT, RANGE
from logslo.file_backend import FileBackend
from logslo.loki_backend import LokiBackend
from logslo.vectors import label_set


def loki_vector(response):
    return {label_set(s["metric"]): float(s["value"][1]) for s in response["data"]["result"]}


def loki_matrix(response):
    return {label_set(s["metric"]): [(float(t), float(v)) for t, v in s["values"]]
            for s in response["data"]["result"]}


@pytest.fixture(scope="module")
def file_backend(fixture_log):
    return FileBackend(fixture_log)


def test_catalog_covers_every_fixture_query(answers):
    assert set(INSTANT) == set(answers["queries"])
    assert set(RANGE) == set(answers["range"])


@pytest.mark.parametrize("name", sorted(INSTANT))
def test_contract_logql_is_exactly_what_loki_was_asked(answers, name):
    """The fixtures were recorded with a bare `| json`; the contracts now extract only the
    fields they use, and are otherwise the very query Loki answered."""
    assert INSTANT[name].bare().render() == answers["queries"][name]["query"]
    lean = INSTANT[name].render()
    assert "| json |" not in lean and "| json event" in lean
    assert bare_json(lean) == answers["queries"][name]["query"]


@pytest.mark.parametrize("name", sorted(INSTANT))
@pytest.mark.parametrize("parser", ["fields", "bare"])
def test_file_backend_reproduces_instant_answer(answers, file_backend, name, parser):
    """`| json event, status` and a bare `| json` give Loki's recorded numbers, bit for bit."""
    expected = loki_vector(answers["queries"][name]["response"])
    query = INSTANT[name] if parser == "fields" else INSTANT[name].bare()
    got = file_backend.instant(query, answers["instant_time"])
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        # Loki prints Go's shortest float; the same float64 must come out of the file.
        assert got[key] == value, (key, got[key], value)


def test_each_query_extracts_only_the_fields_it_uses():
    used = {
        "requests_1h": "event", "rps_5m": "event", "requests_by_version_24h": "event, model_version",
        "requests_by_status_1h": "event, status", "p50_latency_1h": "event, latency_ms",
        "p99_latency_by_version_1h": "event, latency_ms, model_version",
        "error_ratio_5xx_by_version_1h": "event, status, model_version",
        "class_share_1h": "event, status, top1_class",
        "mean_top1_prob_by_version_1h": "event, status, top1_prob, model_version",
    }
    for name, fields in used.items():
        assert f"| json {fields} |" in INSTANT[name].render(), name


def test_file_backend_reproduces_range_answer(answers, file_backend):
    item = answers["range"]["p99_latency_5m_step_300s"]
    query = RANGE["p99_latency_5m_step_300s"]
    assert query.bare().render() == item["query"]
    expected = loki_matrix(item["response"])[()]
    got = file_backend.range(query, item["start"], item["end"], item["step"])[()]
    # Steps aligned to the step: start rounded down, end rounded up (Loki's frontend).
    assert [t for t, _ in got] == [t for t, _ in expected]
    within = [(t, v) for t, v in expected if t <= item["end"]]
    assert got[: len(within)] == within


@pytest.mark.xfail(strict=True, reason=(
    "Loki's value at the extra step it adds past `end` (end rounded up to the step) holds one "
    "sample from before that step's window (04:39:59.921, 0.08 s early); every in-range step "
    "matches bit for bit. Not reproduced yet: see docs/slo.md"))
def test_file_backend_reproduces_the_step_past_end(answers, file_backend):
    item = answers["range"]["p99_latency_5m_step_300s"]
    expected = loki_matrix(item["response"])[()]
    got = file_backend.range(RANGE["p99_latency_5m_step_300s"], item["start"], item["end"], item["step"])[()]
    assert got[-1] == expected[-1]


def test_loki_backend_reads_the_real_answers_into_the_same_numbers(answers, file_backend, fake_loki):
    loki = fake_loki(fixture_answer(answers))
    backend = LokiBackend(loki.url, timeout_s=5)
    at = answers["instant_time"]
    for name, query in INSTANT.items():
        assert backend.instant(query, at) == loki_vector(answers["queries"][name]["response"]), name
    item = answers["range"]["p99_latency_5m_step_300s"]
    matrix = backend.range(RANGE["p99_latency_5m_step_300s"], item["start"], item["end"], item["step"])
    assert matrix == loki_matrix(item["response"])
    # What went over the wire: the exact LogQL, at the fixture's evaluation time.
    sent = [(r["path"], r["params"]) for r in loki.requests]
    assert sent[: len(INSTANT)] == [
        ("/loki/api/v1/query", {"query": q.render(), "time": str(at)}) for q in INSTANT.values()
    ]
    assert sent[-1] == ("/loki/api/v1/query_range", {
        "query": RANGE["p99_latency_5m_step_300s"].render(), "start": str(item["start"]), "end": str(item["end"]),
        "step": str(item["step"])})


def test_numbers_the_fixture_readme_promises(answers, file_backend):
    """Spot checks of the semantics in plain numbers, should the catalog ever drift."""
    at = answers["instant_time"]
    assert file_backend.instant(INSTANT["requests_1h"], at) == {(): 4353.0}
    assert math.isclose(file_backend.instant(INSTANT["rps_5m"], at)[()], 1.03)
    assert file_backend.log.not_json == 10  # the watchdog lines
