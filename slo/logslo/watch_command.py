"""`torchfaas-slo watch` (make canary): a watch from the command line, its reports
rewritten at every look.

    torchfaas-slo watch [FEATURES ...] --baseline V --candidate V
                        [--loki-url URL | --log-file F [--log-file F ...]]
                        (COMPARE_PATH=aggregates with a Loki, or PROMETHEUS_URL: counts, not lines)
                        [--interval S] [--deadline S] [--at T] [--report-dir DIR]

Exit 0 promote, 1 hold, 2 inconclusive at the deadline, 3 broken (no source, bad
contracts, the data failing at the deadline, a version that served nothing).
In the report folder (default reports/canary), after every look: `watch.json` (the
watch document), `watch.html` (the page: it reloads itself while the watch runs); at the
end `report.md` (the verdict for a job summary or a pull-request comment).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

from . import settings as settings_mod
from .compare import feature
from .compare.text import interval_text, value_text
from .newcounts import NewCounts
from .newlines import GrowingFile, GrowingFiles, NewLines
from .verdicts import EXIT_CODES
from .watch import WATCHING, Watch, run

PROG = "torchfaas-slo watch"
DEFAULT_REPORT_DIR = "reports/canary"
HEADLINE = {"promote": "PROMOTE: every contract confidently met", "hold": "HOLD: a contract confidently broken",
            "inconclusive": "INCONCLUSIVE: the deadline came before the data could tell",
            "broken": "BROKEN: the watch could not judge", WATCHING: "WATCHING"}


def contracts_of(paths: list) -> feature.Contracts:
    """The comparison contracts of FEATURES (folders or .feature files), as one set."""
    files = []
    for path in paths:
        files += sorted(glob.glob(os.path.join(path, "*.feature"))) if os.path.isdir(path) else [path]
    if not files:
        raise ValueError(f"no .feature file in {', '.join(paths)}")
    read = [feature.read(path) for path in files]
    if len({c.confidence for c in read}) > 1 or len({c.warmup_s for c in read}) > 1:
        raise ValueError(f"the feature files {', '.join(files)} state different confidence levels or warm-ups")
    function = next((c.function for c in read if c.function), "")
    return feature.Contracts(read[0].confidence, tuple(s for c in read for s in c.steps), read[0].warmup_s, function)


def source_of(slo: settings_mod.Settings, log_files: list):
    """A Loki backend, or the log file(s) read as they grow (a missing one is a look's
    data fault, not an error at start: the functions may not have written yet); on the
    aggregate path (PROMETHEUS_URL, or COMPARE_PATH=aggregates with a Loki) the fetcher
    that counts in Prometheus or Loki."""
    if slo.source.prometheus_url and slo.compare.path != "lines":
        from .prometheus_aggregates import PrometheusAggregates
        return PrometheusAggregates(slo.source.prometheus_url, timeout_s=slo.source.loki_timeout_s)
    if slo.source.loki_url and slo.compare.path == "aggregates":
        from .aggregates import LokiAggregates
        return LokiAggregates(slo.backend)
    if slo.source.loki_url:
        return slo.backend
    if log_files:
        return GrowingFiles([GrowingFile(path) for path in log_files])
    raise settings_mod.SettingsError(settings_mod.NO_SOURCE)


class Reports:
    """Rewrites watch.json and watch.html after each look (atomically: a browser or the
    gate never reads half a file) and prints one line a look, with what reading has cost
    so far when the source counts it (`queries_sent`, `bytes_received`: Loki)."""

    def __init__(self, directory: str, out=None, source=None):
        self.directory, self.out, self.source = directory, out, source
        os.makedirs(directory, exist_ok=True)

    def __call__(self, watch: Watch) -> None:
        from .watch_page import watch_page
        doc = watch.document()
        self._write("watch.json", json.dumps(doc, indent=2))
        self._write("watch.html", watch_page(doc))
        print(look_line(watch) + read_cost(self.source), file=self.out or sys.stdout, flush=True)
        if watch.final:
            self._write("report.md", markdown(doc))

    def _write(self, name: str, text: str) -> None:
        path = os.path.join(self.directory, name)
        with open(path + ".tmp", "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
        os.replace(path + ".tmp", path)


def look_line(watch: Watch) -> str:
    look = watch.looks[-1]
    judged = f"judged {look.requests['baseline']}/{look.requests['candidate']}"
    head = f"look {look.index}/{watch.planned_looks} [{look.status}] {judged}: "
    return head + (HEADLINE[watch.verdict] + ": " if watch.final else "") + watch.reason


def read_cost(source) -> str:
    """` [read so far: 12 queries, 1.2 MB]`, or nothing for a source that does not count
    (Loki's lines: the backend's counters; aggregates: the fetcher's)."""
    queries = getattr(source, "queries_sent", getattr(source, "queries", None))
    received = getattr(source, "bytes_received", getattr(source, "bytes", None))
    if queries is None or received is None:
        return ""
    return f" [read so far: {queries} queries, {received / 1e6:.2f} MB]"


def markdown(doc: dict) -> str:
    lines = [f"### {HEADLINE[doc['verdict']]}", "",
             f"Canary `{doc['candidate']}` vs baseline `{doc['baseline']}` ({doc['function'] or 'function'}), "
             f"from {doc['source']}: {len(doc['looks'])} of {doc['planned_looks']} looks, one every "
             f"{doc['interval_s']:g} s; {doc['confidence']:.0%} over the whole watch "
             f"(each look at {doc['look_confidence']:.3%}); each version's first {doc['warmup_s']:g} s not judged.",
             "", f"{doc['reason']}.", ""]
    if doc["contracts"]:
        lines += [f"| contract | estimate and interval at look {doc['looks'][-1]['index']} | bound | verdict |",
                  "|---|---|---|---|"]
        for j in doc["contracts"]:
            word = "at least" if j["unit"] == "requests" else "at most"
            lines.append(f"| {j['contract']} | {interval_text(j)} | {word} {value_text(j['bound'], j['unit'])} | "
                         f"{j['verdict']} |")
        lines.append("")
    lines.append(f"Requests judged: baseline {doc['requests']['baseline']}, candidate {doc['requests']['candidate']}.")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Watch a canary while traffic shifts to it: hold at the "
                                "first look a contract is confidently broken, promote when all are met, "
                                "inconclusive at the deadline. Exit 0 promote, 1 hold, 2 inconclusive, 3 broken.")
    p.add_argument("features", nargs="*", metavar="FEATURES", help="comparison contracts (default: ./compare)")
    p.add_argument("--baseline", metavar="VERSION", help="the stable model_version (env COMPARE_BASELINE)")
    p.add_argument("--candidate", metavar="VERSION", help="the canary's model_version (env COMPARE_CANDIDATE)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--loki-url", metavar="URL", help="query this Loki (env LOKI_URL)")
    source.add_argument("--log-file", metavar="FILE", action="append",
                        help="a JSONL log read as it grows; repeat for one log per process (env LOG_FILE)")
    p.add_argument("--interval", type=float, metavar="SECONDS", help="between looks (env WATCH_INTERVAL; 60)")
    p.add_argument("--deadline", type=float, metavar="SECONDS",
                   help="after the start, the watch ends undecided (env WATCH_DEADLINE; 1800)")
    p.add_argument("--at", metavar="UNIX_SECONDS",
                   help="when the watch starts (env SLO_AT; default now; a past time replays a recorded log)")
    p.add_argument("--report-dir", metavar="DIR",
                   help=f"watch.json, watch.html, report.md (default {DEFAULT_REPORT_DIR})")
    return p


def main(argv: list, environ=None) -> int:
    args = parser().parse_args(argv)
    env = dict(os.environ if environ is None else environ)
    if args.loki_url:
        env["LOKI_URL"], env["LOG_FILE"] = args.loki_url, ""
    if args.log_file:
        env.pop("LOKI_URL", None)
    for flag, name in ((args.baseline, "COMPARE_BASELINE"), (args.candidate, "COMPARE_CANDIDATE"),
                       (args.interval, "WATCH_INTERVAL"), (args.deadline, "WATCH_DEADLINE"), (args.at, "SLO_AT")):
        if flag is not None:
            env[name] = str(flag)
    try:
        slo = settings_mod.from_env(env)
        log_files = args.log_file or ([slo.source.log_file] if slo.source.log_file else [])
        wanted = slo.compare
        if not wanted.baseline or not wanted.candidate:
            raise settings_mod.SettingsError("set --baseline and --candidate (COMPARE_BASELINE, COMPARE_CANDIDATE)")
        contracts = contracts_of(args.features or ["compare"])
        source = source_of(slo, log_files)
        watch = Watch(contracts, wanted.baseline, wanted.candidate, slo.at, slo.watch.interval_s,
                      slo.watch.deadline_s, function=contracts.function or slo.chart_function,
                      source=source.describe(), process_sd=wanted.process_sd, lines_max=wanted.watch_lines_max)
    except (settings_mod.SettingsError, ValueError, OSError) as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 3
    if hasattr(source, "fetch_steps"):  # the aggregate path: counts, not lines
        reader = NewCounts(source, watch.function, watch.versions, since=slo.at, warmup_s=contracts.warmup_s,
                           lag_s=slo.watch.overlap_s)
    else:
        reader = NewLines(source, watch.function, watch.versions, since=slo.at, overlap_s=slo.watch.overlap_s)
    print(f"watching {watch.candidate} (candidate) against {watch.baseline} (baseline) of {watch.function} in "
          f"{source.describe()}: a look every {watch.interval_s:g} s, {watch.planned_looks} looks, "
          f"warm-up {contracts.warmup_s:g} s", flush=True)
    report_dir = args.report_dir or DEFAULT_REPORT_DIR
    try:
        run(watch, reader, on_look=Reports(report_dir, source=source))
    finally:
        if hasattr(source, "close"):
            source.close()
    print(f"reports in {report_dir}: watch.html, watch.json, report.md")
    return EXIT_CODES[watch.verdict]
