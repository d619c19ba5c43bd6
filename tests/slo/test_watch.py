"""`torchfaas-slo watch` (make canary): a canary judged look by look, each look reading only
what is new, on the committed log of identical code replayed in time order (slo/calibration)
and, for Loki, through a real HTTP stand-in answering from that log with faults switched on
and off between looks. Missing, partial or failed data never promotes and never holds."""

import gzip
import json
import re
import subprocess

import pytest

from logslo import watch_command
from logslo.compare import feature
from logslo.loki_backend import LokiBackend
from logslo.newlines import GrowingFile, NewLines, line_time
from logslo.watch import Watch, run
from test_slo_runner import REPO

LOG = REPO / "slo" / "calibration" / "identical-code.jsonl.gz"
CONTRACTS = REPO / "functions" / "classifier" / "compare"
BASE, CAND = "base-5a0ed7050d97", "candidate-5a0ed7050d97-dirty"
INTERVAL, DEADLINE = 10.0, 300.0


def log_lines(latency_factor=1.0, keep=lambda line: True) -> list:
    lines = [json.loads(raw) for raw in gzip.open(LOG, "rt")]
    out = []
    for line in lines:
        if latency_factor != 1.0 and line.get("model_version") == CAND:
            line["latency_ms"] = round(line["latency_ms"] * latency_factor, 3)
        if keep(line):
            out.append(line)
    return out


def write(path, lines):
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


START = int(min(line_time(line) for line in log_lines()))


def run_watch(tmp_path, log, *args):
    reports = tmp_path / "canary"
    code = watch_command.main([str(CONTRACTS), "--baseline", BASE, "--candidate", CAND, "--log-file", str(log),
                               "--at", str(START), "--interval", str(INTERVAL), "--deadline", str(DEADLINE),
                               "--report-dir", str(reports), *args], environ={})
    return code, json.loads((reports / "watch.json").read_text()), reports


def test_identical_code_is_promoted_once_every_contract_is_confidently_met(tmp_path):
    code, doc, reports = run_watch(tmp_path, write(tmp_path / "log.jsonl", log_lines()))
    assert (code, doc["verdict"], doc["final"]) == (0, "promote", True)
    assert doc["decided_look"] < doc["planned_looks"] and {j["verdict"] for j in doc["contracts"]} == {"promote"}
    # 99% over the whole watch: spent over the K looks left when the first one could decide,
    # (2n - 1)/K**2 of the 1% at the n-th of them
    first = next(look["index"] for look in doc["looks"] if look["status"] == "ok")
    k, n = 30 - first + 1, doc["decided_look"] - first + 1
    assert doc["look_confidence"] == pytest.approx(1 - 0.01 * (2 * n - 1) / k ** 2) and first == 4
    # the warm-up: each version's first 30 s are not judged, and the looks inside it decide nothing
    assert doc["warmup_s"] == 30 and sum(doc["warming_up"].values()) > 900
    assert [look["status"] for look in doc["looks"][:3]] == ["warm-up"] * 3
    assert "PROMOTE" in (reports / "report.md").read_text() and (reports / "watch.html").is_file()


def test_a_slower_candidate_is_held_during_the_watch_not_at_its_end(tmp_path):
    code, doc, reports = run_watch(tmp_path, write(tmp_path / "log.jsonl", log_lines(latency_factor=1.25)))
    assert (code, doc["verdict"]) == (1, "hold")
    assert doc["decided_look"] <= 10 < doc["planned_looks"]  # the first looks after the warm-up
    held = [j for j in doc["contracts"] if j["verdict"] == "hold"]
    assert [j["contract"] for j in held] == ["latency of the candidate vs the baseline (all requests, Hodges-Lehmann)"]
    assert held[0]["low"] > held[0]["bound"] and "HOLD" in (reports / "report.md").read_text()


def test_a_candidate_with_no_traffic_decides_nothing_and_the_watch_ends_broken(tmp_path):
    log = write(tmp_path / "log.jsonl", log_lines(keep=lambda line: line.get("model_version") != CAND))
    code, doc, _ = run_watch(tmp_path, log, "--deadline", "120")
    assert (code, doc["verdict"], doc["decided_look"]) == (3, "broken", None)
    assert {look["status"] for look in doc["looks"]} == {"no-new-data"}
    assert "no judged request of " + CAND in doc["reason"]


def test_make_canary_exits_with_the_verdict(tmp_path):
    """Through make, as a CI job or Argo's Job provider runs it: 1 on hold."""
    log = write(tmp_path / "log.jsonl", log_lines(latency_factor=1.25))
    done = subprocess.run(["make", "-s", "--no-print-directory", "canary", f"BASELINE={BASE}", f"CANDIDATE={CAND}",
                           f"LOG_FILE={log}", f"SLO_AT={START}", "INTERVAL=10", "DEADLINE=300",
                           f"CANARY_REPORT={tmp_path / 'canary'}"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "HOLD" in done.stdout


# -- reading only what is new ------------------------------------------------------------

def test_a_growing_file_is_read_from_where_the_last_look_stopped(tmp_path):
    lines = [json.dumps(line) + "\n" for line in log_lines()[:300]]
    path = tmp_path / "log.jsonl"
    path.write_text("".join(lines[:100]) + lines[100][:40])  # a line cut mid-write
    growing = GrowingFile(str(path))
    growing.advance()
    assert growing.read_lines == 100 and growing.offset == path.stat().st_size
    with open(path, "a") as handle:
        handle.write(lines[100][40:] + "".join(lines[101:300]))
    before = growing.offset
    growing.advance()
    assert growing.read_lines == 300 and growing.offset == path.stat().st_size > before


def test_a_rotated_or_truncated_log_is_followed_as_tail_f_follows_it(tmp_path):
    lines = [json.dumps(line) + "\n" for line in log_lines()[:400]]
    path = tmp_path / "log.jsonl"
    path.write_text("".join(lines[:100]))
    growing = GrowingFile(str(path))
    growing.advance()
    # rotated by renaming: the writer adds to the old file before it reopens the path
    with open(path, "a") as handle:
        handle.write("".join(lines[100:150]))
    path.rename(tmp_path / "log.jsonl.1")
    growing.advance()  # the path is gone for a moment: nothing lost, nothing fails
    with open(tmp_path / "log.jsonl.1", "a") as handle:
        handle.write("".join(lines[150:160]))
    path.write_text("".join(lines[160:250]))
    growing.advance()
    assert growing.read_lines == 250
    # truncated in place (copytruncate): read again from the start
    path.write_text("".join(lines[250:270]))
    growing.advance()
    assert growing.read_lines == 270 and growing.offset == path.stat().st_size
    ids = [e.fields["request_id"] for e in growing.pending]
    assert ids == [json.loads(line)["request_id"] for line in lines[:270]]
    growing.close()


def test_each_loki_read_asks_only_since_the_last_look_and_counts_no_request_twice(tmp_path, loki_standin):
    log = write(tmp_path / "log.jsonl", log_lines())
    loki = loki_standin(log)
    reader = NewLines(LokiBackend(loki.url, timeout_s=5), "classifier", (BASE, CAND), since=START, overlap_s=5)
    first = reader.read(START + 20)
    second = reader.read(START + 40)
    starts = [int(r["params"]["start"]) for r in loki.requests if r["path"].endswith("query_range")]
    # look 2 reaches back only the overlap, for lines Loki ingested late
    assert min(starts[-2:]) == pytest.approx((START + 20 - 5) * 1e9, abs=2)
    ids = [f["request_id"] for side in (first, second) for f in side[BASE] + side[CAND]]
    assert len(ids) == len(set(ids))  # the overlap's lines were read twice, counted once
    expected = [line for line in log_lines() if START < line_time(line) <= START + 40
                and line.get("event") == "inference"]
    assert len(ids) == len(expected)


# -- data that fails: never a promotion, never a rollback --------------------------------

FAULTS = {"down": "unreachable", "slow": "timeout", "429": "rate_limited", "500": "server_error",
          "502": "server_error", "503": "server_error", "limit": "refused", "html": "bad_answer",
          "fail_after_pages": "server_error"}


def watch_through(loki, fault=None, fault_looks=(), deadline=DEADLINE):
    contracts = feature.read(str(CONTRACTS / "canary.feature"))
    watch = Watch(contracts, BASE, CAND, START, INTERVAL, deadline, function="classifier")
    # 1 s: long enough for a loaded machine to answer a fault, short for the slow one
    reader = NewLines(LokiBackend(loki.url, timeout_s=1.0), "classifier", (BASE, CAND), since=START)

    def on_look(w):  # switch the fault for the next look
        upcoming = len(w.looks) + 1
        loki.fault = fault if upcoming in fault_looks else None
        if fault == "fail_after_pages" and upcoming in fault_looks:
            loki.fault = None
            loki.fault = "fail_after_pages=1"  # one page answers, the next fails: a partial read

    on_look(watch)  # the first look too
    return run(watch, reader, on_look=on_look, sleep=lambda s: None)


@pytest.mark.parametrize("fault", FAULTS)
def test_a_watch_whose_data_keeps_failing_ends_broken_having_decided_nothing(tmp_path, loki_standin, fault):
    log = write(tmp_path / "log.jsonl", log_lines(latency_factor=1.25))  # would be held at once
    loki = loki_standin(log)
    watch = watch_through(loki, fault=fault, fault_looks=range(1, 100), deadline=80)
    assert watch.verdict == "broken" and watch.decided_look is None
    assert {look.status for look in watch.looks} == {"data-fault"}
    assert {look.fault_kind for look in watch.looks} == {FAULTS[fault]}
    doc = watch.document()
    assert doc["fault_kind"] == FAULTS[fault] and doc["data_fault"] and "could not be read" in doc["reason"]


@pytest.mark.parametrize("fault", ["429", "fail_after_pages", "slow"])
def test_a_fault_mid_watch_holds_nothing_back_and_loses_nothing(tmp_path, loki_standin, fault):
    """Looks 8-10 fail: they decide nothing (the clean watch holds at look 8); look 11 reads
    what they missed and judges exactly the requests the clean watch judged by look 11."""
    log = write(tmp_path / "log.jsonl", log_lines(latency_factor=1.25))
    clean = watch_through(loki_standin(log), deadline=DEADLINE)
    assert clean.verdict == "hold" and clean.decided_look <= 9, clean.reason
    faulty = watch_through(loki_standin(log), fault=fault, fault_looks=range(clean.decided_look, 11))
    failed = [look for look in faulty.looks if look.status == "data-fault"]
    assert [look.index for look in failed] == list(range(clean.decided_look, 11))
    assert all(look.verdict == "watching" for look in failed) and faulty.verdict == "hold"
    assert faulty.decided_look == 11
    requests_at_11 = faulty.looks[10].requests
    lines = [line for line in log_lines(1.25) if START < line_time(line) <= START + 11 * INTERVAL
             and line.get("event") == "inference"]
    judged_upper = {"baseline": sum(line["model_version"] == BASE for line in lines),
                    "candidate": sum(line["model_version"] == CAND for line in lines)}
    warming = faulty.document()["warming_up"]
    assert {side: requests_at_11[side] + warming[side] for side in requests_at_11} == judged_upper


def test_a_log_that_stops_growing_decides_nothing_after_it_stopped(tmp_path, loki_standin):
    log = write(tmp_path / "log.jsonl", log_lines())
    loki = loki_standin(log)
    loki.fault = f"stale={START + 75}"  # ingestion stops 15 s after the warm-up
    contracts = feature.read(str(CONTRACTS / "canary.feature"))
    watch = Watch(contracts, BASE, CAND, START, INTERVAL, 150, function="classifier")
    run(watch, NewLines(LokiBackend(loki.url, timeout_s=2), "classifier", (BASE, CAND), since=START),
        sleep=lambda s: None)
    assert watch.verdict == "inconclusive" and watch.decided_look is None
    assert [look.status for look in watch.looks][8:] == ["no-new-data"] * (len(watch.looks) - 8)
    assert "about" in watch.reason and "requests a version would decide it" in watch.reason


def test_the_watch_prints_what_its_reads_cost(tmp_path, loki_standin, capsys):
    """Each look's line says how many queries the watch has sent and the bytes it received:
    what the Loki stand-in counted, growing look by look with what each look read."""
    loki = loki_standin(write(tmp_path / "log.jsonl", log_lines()))
    reports = tmp_path / "canary"
    code = watch_command.main([str(CONTRACTS), "--baseline", BASE, "--candidate", CAND, "--loki-url", loki.url,
                               "--at", str(START), "--interval", str(INTERVAL), "--deadline", "60",
                               "--report-dir", str(reports)], environ={})
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("look ")]
    costs = [re.search(r"read so far: (\d+) queries, ([\d.]+) MB", line) for line in printed]
    assert code in (0, 2) and len(costs) == 6 and all(costs)
    queries = [int(c.group(1)) for c in costs]
    assert queries == sorted(queries) and queries[0] > 0
    assert queries[-1] == sum(loki.counts.values())
    assert float(costs[-1].group(2)) > float(costs[0].group(2)) > 0


# -- the aggregate path: counts, not lines -----------------------------------------------


def test_each_look_counts_only_since_the_last_and_leaves_the_warm_up_out(tmp_path, loki_standin):
    """NewCounts through the Loki stand-in: every request of the watch so far is either
    judged or warm-up, each counted once, and no request of a version's first 30 s is judged."""
    from logslo.aggregates import LokiAggregates
    from logslo.newcounts import NewCounts, add

    log = write(tmp_path / "log.jsonl", log_lines())
    fetcher = LokiAggregates(LokiBackend(loki_standin(log).url, timeout_s=5))
    reader = NewCounts(fetcher, "classifier", (BASE, CAND), since=START, warmup_s=30, lag_s=0)
    kept, warming = {}, {BASE: 0, CAND: 0}
    for look in range(1, 9):
        counted = reader.read(START + look * 10)
        for version in (BASE, CAND):
            kept[version] = add(kept.get(version), counted.counts[version])
            warming[version] += counted.warming.get(version, 0)
    assert reader.last == (START + 80) // 5 * 5  # the reads start and end on the 5 s grid
    lines = [line for line in log_lines() if START // 5 * 5 < line_time(line) <= reader.last
             and line.get("event") == "inference"]
    for version in (BASE, CAND):
        mine = sorted(line_time(line) for line in lines if line["model_version"] == version)
        assert kept[version]["requests"] + warming[version] == len(mine)
        judged_early = sum(t <= mine[0] + 30 for t in mine)
        assert warming[version] >= judged_early  # the whole warm-up left out, and at most a step more
        assert warming[version] <= sum(t <= mine[0] + 35 for t in mine)
        assert sum(n for _, pairs in kept[version]["latency_steps"] for _, n in pairs) == kept[version]["requests"]
    # a stepped read a look (7 queries), and one more for each version as its warm-up ends
    assert fetcher.queries == (8 + 2) * fetcher.queries_per_look == 70


def watch_loki(tmp_path, loki, name, path, deadline=DEADLINE):
    reports = tmp_path / name
    code = watch_command.main([str(CONTRACTS), "--baseline", BASE, "--candidate", CAND, "--loki-url", loki.url,
                               "--at", str(START), "--interval", str(INTERVAL), "--deadline", str(deadline),
                               "--report-dir", str(reports)], environ={"COMPARE_PATH": path, "WATCH_OVERLAP": "0"})
    return code, json.loads((reports / "watch.json").read_text())


@pytest.mark.parametrize("factor,verdict", [(1.0, "promote"), (1.25, "hold")])
def test_a_watch_on_loki_s_counts_decides_as_on_its_lines(tmp_path, loki_standin, factor, verdict):
    """COMPARE_PATH=aggregates: each look reads each version's counts since the last look
    from Loki's metric queries (a few per look, never a line), leaves each version's
    warm-up out, and the watch reaches the verdict the lines give, at about the same look."""
    loki = loki_standin(write(tmp_path / "log.jsonl", log_lines(latency_factor=factor)))
    line_code, by_lines = watch_loki(tmp_path, loki, "lines", "lines")
    before = len(loki.requests)
    count_code, by_counts = watch_loki(tmp_path, loki, "counts", "aggregates")
    asked = loki.requests[before:]
    assert by_lines["verdict"] == by_counts["verdict"] == verdict and line_code == count_code
    assert abs(by_counts["decided_look"] - by_lines["decided_look"]) <= 2
    assert all("count_over_time" in r["params"]["query"] for r in asked)  # no line read
    # warm-up: the same requests left out as by their lines' times (to the 5 s step)
    assert by_counts["warming_up"]["candidate"] == pytest.approx(by_lines["warming_up"]["candidate"], rel=0.2)
    print(f"\n{verdict}: lines decided at look {by_lines['decided_look']}, judged {by_lines['requests']}; "
          f"counts at look {by_counts['decided_look']}, judged {by_counts['requests']}, "
          f"{len(asked)} queries for {by_counts['decided_look']} looks")
