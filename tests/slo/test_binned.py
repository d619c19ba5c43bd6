"""Judging from counts (the aggregate path): the interface's checks, and agreement with the
line path on the committed log of identical code (slo/calibration), measured per trial."""
import gzip
import math
import shutil
from collections import Counter

import numpy as np
import pytest

from logslo import calibration, html, judge, judge_binned, settings
from logslo.compare import binned, feature, paths, reports, text
from logslo.compare.binned import Binned
from logslo.compare.sampling import Comparison
from logslo.compare.stream import StreamedLog
from logslo.file_backend import FileBackend
from test_slo_runner import REPO

POOL = REPO / "slo" / "calibration" / "identical-code.jsonl.gz"
FEATURE = REPO / "functions" / "classifier" / "compare" / "canary.feature"
BASE, CAND = "base-5a0ed7050d97", "candidate-5a0ed7050d97-dirty"
AT = 1796531400.0  # 2026-12-06T04:30:00Z, after the log's last line


@pytest.fixture(scope="module")
def pool():
    return calibration.read_pool(str(POOL))


def counts(**changes):
    good = {"requests": 3, "latency_bins": [[10.0, 0], [11.0, 2], [12.0, 0], [13.0, 1]],
            "status": {"200": 2, "503": 1}, "classes": {"tabby": 2}, "values": {"p": [[0.0, 0], [1.0, 2]]},
            "latency_steps": [[100.0, [[11.0, 1]]], [101.0, [[11.0, 1], [13.0, 1]]]]}
    return {**good, **changes}


def test_the_interface_reads_a_version_with_a_leading_empty_bin_as_its_floor():
    version = Binned.from_counts(counts())
    assert (version.requests, version.faults, version.rejections) == (3, 1, 0)
    assert version.latency.floor == 10.0 and list(version.latency.uppers) == [11.0, 12.0, 13.0]
    assert version.quantile(0.0) == pytest.approx(10.25) and version.quantile(1.0) == pytest.approx(12.5)
    assert version.values("p").n == 2 and version.values("p").mean == pytest.approx(0.5)
    assert version.values("p").off_by == 0.5  # half its widest bin: what the report states
    times, rows = version.latency_over_time()
    assert list(times) == [100.0, 101.0] and rows.sum() == 3
    assert Binned.from_counts(version.to_counts()).to_counts() == version.to_counts()


@pytest.mark.parametrize("bad, words", [
    ({"requests": 4}, "latency_bins hold 3 requests, requests says 4"),
    ({"requests": -1}, "requests is a count"),
    ({"latency_bins": [[11.0, 2], [10.0, 1]]}, "strictly ascending"),
    ({"latency_bins": [[math.inf, 2], [12.0, 1]]}, "strictly ascending"),
    ({"latency_bins": [[10.0, 1.5]]}, "a count"),
    ({"status": {"200": 3, "503": 1}}, "status counts sum to 4"),
    ({"status": {"2xx": 3}}, "three-digit strings"),
    ({"classes": {"tabby": 3}}, "more than the 2 200s"),
    ({"values": {"p": [[1.0, 2], [math.inf, 0]]}}, "unbounded bin"),
    ({"latency_steps": [[100.0, [[11.5, 1]]]]}, "not one of latency_bins'"),
    ({"latency_steps": [[100.0, []], [100.0, []]]}, "repeat a step"),
    ({"bins": []}, "unknown keys"),
])
def test_the_interface_refuses_what_it_cannot_judge_and_says_why(bad, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace("'", "'")):
        Binned.from_counts(counts(**bad))


def test_a_streamed_version_keeps_bounded_steps_however_long_the_log():
    version = Binned()
    for second in range(3 * binned.MAX_STEPS):
        version.add({"latency_ms": "20", "status": "200", "timestamp": f"1970-01-01T{second // 3600:02d}:"
                     f"{second // 60 % 60:02d}:{second % 60:02d}Z"})
    times, rows = version.latency_over_time()
    assert len(times) <= binned.MAX_STEPS and version.step_s == 4.0 and rows.sum() == version.requests == 3 * 1024


def test_a_latency_bin_holds_exactly_the_values_of_its_edges():
    version = Binned()
    uppers = binned.DEFAULT_LATENCY_UPPERS
    for value in (uppers[0], uppers[500], uppers[500] * (1 + 1e-12), 1e9, 0.0):
        version.add({"latency_ms": repr(float(value)), "status": "200"})
    filled = np.flatnonzero(version.latency_counts)
    assert list(filled) == [0, 500, 501, len(uppers) - 1] and version.latency_counts[0] == 2


def test_both_paths_give_the_same_verdicts_on_the_committed_log(pool):
    """Every scenario of the calibration, each trial judged from lines and from bins (1%
    log-scale, through the interface's dict): no verdict differs; the latency shift's
    estimate moves by far less than a bin, and the p99 interval from bin edges contains
    the one from the requests (conservative, never narrower)."""
    agreement = calibration.Agreement()
    trials = {s: 4 for s in calibration.SCENARIOS}
    calibration.run(pool, feature.read(str(FEATURE)), 2000, trials, seed=3, agreement=agreement)
    print("\n" + agreement.table())
    assert agreement.trials == 16 and agreement.overall_differs == 0 and not agreement.differs
    moves = agreement.summary()
    shift = moves["latency of the candidate vs the baseline (all requests, Hodges-Lehmann)"]
    assert shift["max_estimate"] < 0.002  # a fifth of the 1% bins
    assert 0 < shift["max_low"] < 0.02 and shift["max_high"] < 0.02  # the design effect's own noise, bins apart
    assert moves["5xx ratio of the candidate minus the baseline's"]["max_estimate"] == 0  # counts lose nothing


def test_quantile_bounds_from_bins_contain_those_from_the_requests(pool):
    latencies = np.array([float(line["latency_ms"]) for line in pool])
    version = Binned()
    for line in pool:
        version.add({k: str(v) for k, v in line.items()})
    for phi in (0.5, 0.95, 0.99):
        exact = judge.quantile_bounds(np.sort(latencies), phi, 0.005)
        low, high = judge_binned.quantile_bounds(version.latency, phi, 0.005)
        assert low <= exact[0] and high >= exact[1]
        assert exact[0] / low < 1.011 and high / exact[1] < 1.011  # by at most one 1% bin


def test_one_millisecond_bins_as_loki_counts_them_still_agree(pool):
    """Loki bins latency with `floor` (1 ms: 6% wide at this log's 16 ms median): a +25%
    candidate is held and identical code promoted from those counts too, with the
    shift's estimate within half a point of the line path's."""
    rng = np.random.default_rng(7)
    contracts = feature.read(str(FEATURE))
    for factor in (1.0, 1.25):
        drawn = [pool[i] for i in rng.choice(len(pool), 4000, replace=False)]
        base, cand = drawn[:2000], [{**line, "latency_ms": line["latency_ms"] * factor} for line in drawn[2000:]]
        by_lines = feature.decide(contracts, feature.pair(calibration.samples_of(base), calibration.samples_of(cand)))
        sides = []
        for lines in (base, cand):
            floors = np.floor([line["latency_ms"] for line in lines]).astype(int)
            status = Counter(str(line["status"]) for line in lines)
            classes = Counter(line["top1_class"] for line in lines if line["status"] == 200 and line.get("top1_class"))
            low, high = int(floors.min()), int(floors.max())
            bins = [[float(low), 0]] + [[float(b + 1), int((floors == b).sum())] for b in range(low, high + 1)]
            sides.append(Binned.from_counts({"requests": len(lines), "latency_bins": bins, "status": dict(status),
                                             "classes": dict(classes)}))
        by_bins = feature.decide(contracts, feature.pair(*sides))
        shift = [next(j for j in judged if "Hodges" in j.contract) for _, judged in (by_lines, by_bins)]
        assert shift[0].verdict == shift[1].verdict == ("hold" if factor > 1 else "promote")
        assert abs(shift[0].estimate - shift[1].estimate) < 0.005


def test_a_compare_from_the_streamed_log_matches_the_one_from_its_lines(pool, tmp_path):
    plain = tmp_path / "identical-code.jsonl"
    with gzip.open(POOL, "rb") as packed, open(plain, "wb") as out:
        shutil.copyfileobj(packed, out)
    from_lines = Comparison(FileBackend(str(plain)), "classifier", AT, 3600, BASE, CAND)
    from_bins = Comparison(StreamedLog(str(POOL)), "classifier", AT, 3600, BASE, CAND)
    assert (from_lines.path, from_bins.path) == ("lines", "aggregates")
    for version in (BASE, CAND):
        lines, bins = from_lines.figures[version], from_bins.figures[version]
        assert bins["requests"] == lines["requests"] > 5000
        assert bins["ratio_4xx"] == pytest.approx(lines["ratio_4xx"]) and bins["ratio_5xx"] == lines["ratio_5xx"]
        assert bins["class_shares"] == pytest.approx(lines["class_shares"])
        assert bins["p50_ms"] == pytest.approx(lines["p50_ms"], rel=0.01)
    contracts = feature.read(str(FEATURE))
    verdicts = [[j.verdict for j in feature.decide(contracts, c)[1]] for c in (from_lines, from_bins)]
    assert verdicts[0] == verdicts[1] == ["promote"] * 5
    assert from_bins.timeline["p50_ms"][BASE] and from_bins.timeline["step_s"] > 0
    judged = feature.decide(contracts, from_bins)[1]
    doc = reports.document(from_bins, judged, [], "the log", AT, BASE, CAND, 3600)
    assert (doc["path"], doc["path_why"]) == ("aggregates", "a log file streamed into bins")
    for page in (text.markdown(doc), text.human(doc), html.compare_page(doc)):
        assert "aggregates: counts in bins" in page
    assert "bins resolve 1.0% at the median" in text.human(doc)


def test_the_line_path_refuses_over_its_budget_naming_the_settings(tmp_path):
    env = {"LOG_FILE": str(POOL), "COMPARE_PATH": "lines", "COMPARE_MEMORY_MB": "10"}
    with pytest.raises(paths.TooBig, match="above COMPARE_MEMORY_MB=10: set COMPARE_PATH=aggregates"):
        paths.choose(settings.from_env(env))
    chosen = paths.choose(settings.from_env({**env, "COMPARE_PATH": "auto", "COMPARE_LINES_MAX": "1000"}))
    assert chosen.path == "aggregates" and "COMPARE_LINES_MAX=1000" in chosen.why
    assert paths.choose(settings.from_env({**env, "COMPARE_PATH": "auto", "COMPARE_MEMORY_MB": "1024"})).path == "lines"
    with pytest.raises(paths.TooBig, match="would keep v1 3,000,000"):
        paths.check_budget(type("Loki", (), {"name": "loki"})(), {"v1": 3e6, "v2": 1e6}, 1024)
    with pytest.raises(settings.SettingsError, match="COMPARE_PATH must be one of auto, lines, aggregates"):
        settings.from_env({"COMPARE_PATH": "bins"})


def test_a_watch_that_keeps_counts_decides_as_one_that_keeps_every_request(pool):
    """The recorded stream replayed look by look, identical and +25% slower: a watch that
    counts from the start (COMPARE_PATH=aggregates), one that switches to counts past 500
    requests a version, and one that keeps every request end alike."""
    from logslo import watch_calibration
    contracts = feature.read(str(FEATURE))
    verdicts = {}
    for lines_max in (None, 0, 500):
        tallies = watch_calibration.run(pool, contracts, 2, streams=("as recorded",),
                                        changes=("identical", "latency +25%"), lines_max=lines_max)
        verdicts[lines_max] = {change: dict(t.verdicts) for (_, change), t in tallies.items()}
    assert verdicts[None] == verdicts[0] == verdicts[500]
    assert verdicts[0]["latency +25%"] == {"hold": 2}


def test_a_watch_past_its_line_budget_keeps_counts():
    from logslo.watch import Watch
    contracts = feature.Contracts(0.99, feature.read(str(FEATURE)).steps)  # no warm-up
    watch = Watch(contracts, BASE, CAND, 0.0, 1, 5, lines_max=3)
    lines = [{"latency_ms": "20", "status": "200", "top1_class": "tabby", "timestamp": f"1970-01-01T00:01:{s:02d}Z"}
             for s in range(10)]
    watch.observe(1.0, {BASE: lines[:2], CAND: lines[:2]})
    assert watch.path == "lines"
    watch.observe(2.0, {BASE: lines[2:], CAND: lines[2:]})
    assert watch.path == "aggregates" and watch.requests() == {"baseline": 10, "candidate": 10}
    assert watch.compared.samples[BASE].classes == {"tabby": 10} and watch.document()["path"] == "aggregates"
