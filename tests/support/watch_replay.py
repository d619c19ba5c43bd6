"""TEST HELPER: watch documents made by replaying a committed log through the real watch
(logslo.watch.Watch), for the watch page's tests.

The log of one `make review` run whose two sides served identical code (slo/calibration/,
two versions, ~5,500 requests each over 300 s) is replayed in time order, a look every
`interval_s` seconds of log time, each look handing the watch the lines new since the last
one (or a fault instead: that look reads nothing, the next one reads from the same point),
with the contracts of functions/classifier/compare/canary.feature.

    replay()                                the identical code: promotes
    replay(latency_factor=1.25)             the candidate 25% slower: holds
    replay(stop_after=4)                    still watching at look 4
    replay(stop_after=5, faults={3: TIMEOUT, 5: RATE_LIMITED})
                                            looks 3 and 5 could not read the data
    replay(latency_bound=2, deadline_s=345) a bound this traffic cannot decide; the log
                                            ends at 300 s: looks with no new data, then
                                            inconclusive at the deadline
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

from logslo import calibration
from logslo.compare import behave_glue, feature
from logslo.logfile import parse_rfc3339_ns
from logslo.loki_backend import LokiError
from logslo.watch import Watch

REPO = Path(__file__).resolve().parents[2]
LOG = REPO / "slo" / "calibration" / "identical-code.jsonl.gz"
FEATURE = REPO / "functions" / "classifier" / "compare" / "canary.feature"
RATE_LIMITED = ("rate_limited", "Loki answered HTTP 429 Too Many Requests (per-tenant rate limit)")
TIMEOUT = ("timeout", "Loki did not answer within 30 s")


@functools.lru_cache(maxsize=1)
def log_lines() -> tuple:
    """(unix seconds, model version, fields) of every inference line, in time order."""
    lines = [(parse_rfc3339_ns(line["timestamp"]) / 1e9, line["model_version"],
              {k: str(v) for k, v in line.items() if v is not None}) for line in calibration.read_pool(str(LOG))]
    return tuple(sorted(lines, key=lambda line: line[0]))


def versions() -> tuple:
    """(baseline, candidate) as the log names them."""
    names = sorted({version for _, version, _ in log_lines()})
    return next(v for v in names if v.startswith("base")), next(v for v in names if v.startswith("candidate"))


def contracts(latency_bound=None, warmup_s=10.0) -> feature.Contracts:
    """The canary feature's contracts, the latency bound and the warm-up optionally replaced."""
    read = feature.read(str(FEATURE))
    steps = tuple((f, {**a, "bound": latency_bound} if f is behave_glue.step_latency_shift and latency_bound
                   else a) for f, a in read.steps)
    return dataclasses.replace(read, steps=steps, warmup_s=warmup_s)


def fault(kind: str, text: str) -> LokiError:
    err = LokiError(text)
    err.kind = kind
    return err


def replay(latency_factor: float = 1.0, interval_s: float = 15.0, deadline_s: float = 300.0,
           warmup_s: float = 10.0, stop_after: int | None = None, faults: dict | None = None,
           latency_bound: float | None = None) -> dict:
    """The watch document after the replay's last look (see the module's docstring).
    `faults`: {look index: (fault kind, text)}: that look read nothing."""
    faults = faults or {}
    base_name, cand_name = versions()
    lines = log_lines()
    started = lines[0][0]
    watch = Watch(contracts(latency_bound, warmup_s), base_name, cand_name, started, interval_s, deadline_s,
                  function="classifier", source=f"log file {LOG.relative_to(REPO)} (replayed in time order)")
    read = 0  # lines[:read] have been handed to the watch
    for index in range(1, (stop_after or watch.planned_looks) + 1):
        at = started + index * interval_s
        if index in faults:
            watch.observe(at, None, fault(*faults[index]))
        else:
            fresh = {base_name: [], cand_name: []}
            while read < len(lines) and lines[read][0] <= at:
                _, version, fields = lines[read]
                read += 1
                if version == cand_name and latency_factor != 1.0:
                    fields = {**fields, "latency_ms": str(float(fields["latency_ms"]) * latency_factor)}
                fresh[version].append(fields)
            watch.observe(at, fresh)
        if watch.final:
            break
    return watch.document()


def not_started(error: str) -> dict:
    """The document of a watch that could not run at all (broken, no look)."""
    base, cand = versions()
    watch = Watch(contracts(), base, cand, log_lines()[0][0], 15.0, 300.0, function="classifier",
                  source="log file missing.jsonl")
    doc = watch.document()
    doc.update(verdict="broken", final=True, reason=f"the watch could not run: {error}", errors=[error])
    return doc
