"""Counts from Loki metric queries (logslo.aggregates) through a real HTTP server: the Loki
stand-in over the fixture log as metric-answers.json was recorded (its answers to the
recorded histogram, status and class queries equal the real Loki 3.7.6's JSON:
test_loki_standin.py). Every count is checked against requests.jsonl read directly."""

import json
import math
from collections import Counter, defaultdict

import pytest

from logslo import queries
from logslo.aggregates import LATENCY_BANDS_MS, AggregateError, LokiAggregates, contiguous, merge_counts
from logslo.compare.binned import Binned
from logslo.logfile import parse_rfc3339_ns
from logslo.logql import LabelFilter
from logslo.loki_backend import LokiBackend, LokiError
from loki_standin import LokiStandIn

F = "classifier"
VERSIONS = ("v1.2.1", "v1.3.0")
NS = 1_000_000_000


@pytest.fixture(scope="module")
def loki(shifted_log):
    with LokiStandIn(shifted_log) as server:
        yield server
    assert not server.errors


@pytest.fixture(scope="module")
def requests_read_directly(fixture_log, metric_answers):
    """Every inference request of the file: (unix s in the recorded time, version, fields)."""
    shift = metric_answers["log_time_shift_s"]
    out = []
    with open(fixture_log, encoding="utf-8") as f:
        for line in f:
            try:
                fields = json.loads(line)
            except ValueError:
                continue  # the watchdog's lines
            if isinstance(fields, dict) and fields.get("event") == "inference":
                out.append((parse_rfc3339_ns(fields["timestamp"]) / NS + shift, fields["model_version"], fields))
    return out


def in_window(requests, start, end):
    return [(v, fields) for t, v, fields in requests if start < t <= end]


def count_between(latencies, lower, upper):
    """Requests in [lower, upper) as Loki's floor bins hold them (plain comparisons)."""
    return sum(lower <= x < upper for x in latencies)


def test_one_look_counts_what_the_file_holds(loki, metric_answers, requests_read_directly):
    end = metric_answers["instant_time"]
    backend = LokiBackend(loki.url, timeout_s=10)
    counts = LokiAggregates(backend).fetch(F, VERSIONS, end - 3600, end)
    seen = in_window(requests_read_directly, end - 3600, end)
    assert set(counts) == set(VERSIONS)
    for version in VERSIONS:
        mine = [fields for v, fields in seen if v == version]
        got = counts[version]
        assert got["requests"] == len(mine) > 100
        assert got["status"] == {str(k): n for k, n in sorted(Counter(f["status"] for f in mine).items())}
        assert got["classes"] == dict(Counter(f["top1_class"] for f in mine if f["status"] == 200))
        latencies = [float(f["latency_ms"]) for f in mine]
        lower = 0.0
        for upper, n in got["latency_bins"]:
            assert n == count_between(latencies, lower, upper), (version, lower, upper)
            lower = upper
        assert sum(n for _, n in got["latency_bins"]) == len(mine)
        Binned.from_counts(got)  # the comparison's own check of the interface
    # a few hundred bins, not 4,353 lines
    assert all(len(counts[v]["latency_bins"]) < 400 for v in VERSIONS)


def test_bins_are_as_fine_as_the_bands_say(loki, metric_answers):
    end = metric_answers["instant_time"]
    counts = LokiAggregates(LokiBackend(loki.url, timeout_s=10)).fetch(F, VERSIONS, end - 3600, end)
    for version in VERSIONS:
        pairs = counts[version]["latency_bins"]
        for (lower, _), (upper, n) in zip(pairs, pairs[1:]):
            if not n:
                continue  # a gap between bins holding requests: one empty bin
            band = next(b for b in LATENCY_BANDS_MS if b[0] <= lower < b[1])
            assert upper - lower == pytest.approx(band[2]) or upper == math.inf
            if lower >= 10:  # each bin at most 5% of the latency it holds from 10 ms up
                assert (upper - lower) / lower <= 0.05 + 1e-12


def test_a_regression_s_values_and_the_one_ms_bins_a_real_loki_answered(loki, metric_answers):
    """One band of 1 ms bins is the recorded query (`| json` aside): its counts are the real
    Loki's; a field binned by 1/20 (`mulf 20`) is the recorded top1_prob histogram."""
    end = metric_answers["instant_time"]
    fetcher = LokiAggregates(LokiBackend(loki.url, timeout_s=10), bands=((None, None, 1),), values={"top1_prob": 0.05})
    counts = fetcher.fetch(F, VERSIONS, end - 3600, end)
    for name, field, width in (("latency_bins_1ms_by_version", "latency_bins", 1),
                               ("top1_prob_bins_by_version", "top1_prob", 0.05)):
        recorded = defaultdict(dict)
        for series in metric_answers["queries"][name]["response"]["data"]["result"]:
            k = int(series["metric"]["bin"])
            recorded[series["metric"]["model_version"]][(k * width if width >= 1 else k / 20,
                                                         (k + 1) * width if width >= 1 else (k + 1) / 20)] = \
                int(series["value"][1])
        for version in VERSIONS:
            got = counts[version]["latency_bins"] if field == "latency_bins" else counts[version]["values"][field]
            assert got == contiguous(recorded[version], floor=0.0 if field == "latency_bins" else None)
    assert Binned.from_counts(counts["v1.3.0"]).values("top1_prob").n == counts["v1.3.0"]["status"]["200"]


def test_steps_tile_the_window_and_count_what_the_file_holds(loki, metric_answers, requests_read_directly):
    end = metric_answers["instant_time"] // 300 * 300
    start = end - 3600
    counts = LokiAggregates(LokiBackend(loki.url, timeout_s=10)).fetch_steps(F, VERSIONS, start, end, 300)
    for version in VERSIONS:
        steps = counts[version]["latency_steps"]
        for at, pairs in steps:
            mine = [f for t, v, f in requests_read_directly if v == version and at < t <= at + 300]
            assert sum(n for _, n in pairs) == len(mine)
        assert sum(n for _, pairs in steps for _, n in pairs) == counts[version]["requests"]
        assert all(start <= at < end for at, _ in steps)
        binned = Binned.from_counts(counts[version])
        assert binned.step_s == 300


def test_n_looks_cost_n_times_one_look(loki, metric_answers):
    """A look is a fixed number of queries and answers of a few kilobytes: a watch's cost
    grows linearly with its looks, and not with the traffic."""
    end = metric_answers["instant_time"]
    fetcher = LokiAggregates(LokiBackend(loki.url, timeout_s=10))
    fetcher.fetch(F, VERSIONS, end - 3600, end)
    one_queries, one_bytes = fetcher.queries, fetcher.bytes
    assert one_queries == fetcher.queries_per_look == len(LATENCY_BANDS_MS) + 3
    assert 0 < one_bytes < 100_000
    for minute in range(1, 30):  # 29 more looks, each of the minute since the last
        fetcher.fetch(F, VERSIONS, end - 3600 + minute * 60, end - 3600 + (minute + 1) * 60)
    assert fetcher.queries == 30 * one_queries
    print(f"\n30 looks: {fetcher.queries} queries, {fetcher.bytes} bytes (one 1h look: {one_queries}, {one_bytes})")


def test_loki_s_400s_are_clear_errors(loki, metric_answers):
    backend = LokiBackend(loki.url, timeout_s=10)
    bad = metric_answers["queries"]["bad_query_unknown_function"]
    with pytest.raises(LokiError) as caught:
        backend.instant(bad["query"], metric_answers["instant_time"])
    assert caught.value.kind == "refused" and caught.value.status == 400
    assert bad["body"] in str(caught.value) and "frobnicate_over_time" in str(caught.value)
    over = metric_answers["ranges"]["lines_over_max_entries_limit"]
    with pytest.raises(LokiError) as caught:
        backend._get("/loki/api/v1/query_range", over["query"], {k: str(v) for k, v in over["params"].items()})
    assert caught.value.kind == "refused" and over["body"] in str(caught.value)


def test_too_many_series_is_refused_with_loki_s_reason(shifted_log, metric_answers):
    """Bins too fine for Loki's max_query_series: the fetch fails, naming the query and why."""
    end = metric_answers["instant_time"]
    with LokiStandIn(shifted_log, max_series=100) as server:
        fetcher = LokiAggregates(LokiBackend(server.url, timeout_s=10), bands=((0, 1000, 0.5),))
        with pytest.raises(LokiError) as caught:
            fetcher.fetch(F, VERSIONS, end - 3600, end)
    assert caught.value.kind == "refused" and caught.value.status == 400
    assert "maximum number of series (100)" in str(caught.value)
    assert "label_format bin=" in str(caught.value)


def test_counts_that_do_not_add_up_are_an_error_not_a_verdict(loki, metric_answers):
    """Bands that leave requests out (here: none above 100 ms counted) do not pass as counts."""
    end = metric_answers["instant_time"]
    fetcher = LokiAggregates(LokiBackend(loki.url, timeout_s=10), bands=((0, 50, 0.5), (50, 100, 1)))
    counts = fetcher.fetch(F, VERSIONS, end - 3600, end)
    assert counts["v1.2.1"]["latency_bins"][-1][0] == math.inf
    with pytest.raises(AggregateError, match="in latency bins"):
        LokiAggregates._counts("v1", {"200": 3}, {(0.0, 1.0): 2}, {}, {})


def test_the_queries_are_the_recorded_ones_but_for_the_fields_they_extract(metric_answers):
    recorded = metric_answers["queries"]
    assert queries.binned_requests(F, 3600, "latency_ms", 5).bare().render() == \
        recorded["latency_bins_5ms_by_version"]["query"]
    assert queries.requests_where(F, 3600, LabelFilter("latency_ms", ">", 50)).bare().render() == \
        recorded["latency_over_50ms_by_version"]["query"]
    assert queries.class_counts(F, 3600).bare().render() == recorded["class_mix_by_version"]["query"]


def test_a_watch_s_looks_add_up_to_one_window(loki, metric_answers):
    """Sixty looks of a minute each, every one reading only its minute, add up to the very
    counts of one hour read at once (merge_counts), for 60 times one look's queries."""
    end = metric_answers["instant_time"]
    start = end - 3600
    whole_fetcher = LokiAggregates(LokiBackend(loki.url, timeout_s=10), values={"top1_prob": 0.05})
    whole = whole_fetcher.fetch(F, VERSIONS, start, end)
    looks = LokiAggregates(LokiBackend(loki.url, timeout_s=10), values={"top1_prob": 0.05})
    kept = None
    for minute in range(60):
        look = looks.fetch(F, VERSIONS, start + minute * 60, start + (minute + 1) * 60)
        kept = look if kept is None else {v: merge_counts(kept[v], look[v]) for v in VERSIONS}
    assert kept == whole
    assert looks.queries == 60 * whole_fetcher.queries
    print(f"\n60 one-minute looks: {looks.queries} queries, {looks.bytes} bytes; "
          f"one 1h read: {whole_fetcher.queries} queries, {whole_fetcher.bytes} bytes")


def test_a_comparison_s_version_counts_come_from_loki_s_counting(loki, metric_answers):
    """LokiBackend.version_counts (what the aggregate path of a comparison asks): both
    versions read by one fetch, with 1-minute steps (the longest of at least 20 whose grid
    the window's ends are on)."""
    end = metric_answers["instant_time"] // 300 * 300
    backend = LokiBackend(loki.url, timeout_s=10)
    base = backend.version_counts(F, "v1.2.1", end - 3600, end)
    sent = backend.queries_sent
    cand = backend.version_counts(F, "v1.3.0", end - 3600, end)
    assert backend.queries_sent == sent  # the second version was read with the first
    whole = LokiAggregates(LokiBackend(loki.url, timeout_s=10)).fetch(F, VERSIONS, end - 3600, end)
    for got, version in ((base, "v1.2.1"), (cand, "v1.3.0")):
        assert {k: v for k, v in got.items() if k != "latency_steps"} == whole[version]
        assert len(got["latency_steps"]) <= 60 and Binned.from_counts(got).step_s == 60
        assert sum(n for _, pairs in got["latency_steps"] for _, n in pairs) == got["requests"]
    assert backend.version_counts(F, "v9", end - 3600, end)["requests"] == 0
