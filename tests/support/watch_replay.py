"""TEST HELPER: watch documents made by replaying a committed log, for the watch page's tests.

Not the watch. The real one (`torchfaas-slo watch`) replaces this; until then the page is
tested on documents with real numbers, assembled here per the watch contract: the log of
one `make review` run whose two sides served identical code (slo/calibration/, two
versions, ~5,500 requests each over 300 s) is replayed in time order, a look every
`interval_s` seconds of log time, and at each look the contracts of
functions/classifier/compare/canary.feature are decided with the very step functions
`torchfaas-slo compare` runs, on everything judged so far (each version's first
`warmup_s` seconds left out), at the per-look level that keeps the feature's level over
the whole watch (Bonferroni over the planned looks).

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

import functools
from pathlib import Path
from types import SimpleNamespace

from logslo import calibration, compare
from logslo.logfile import parse_rfc3339_ns

REPO = Path(__file__).resolve().parents[2]
LOG = REPO / "slo" / "calibration" / "identical-code.jsonl.gz"
FEATURE = REPO / "functions" / "classifier" / "compare" / "canary.feature"
LOOK_KEYS = ("contract", "unit", "bound", "verdict", "estimate", "low", "high")
RATE_LIMITED = ("rate_limited", "Loki answered HTTP 429 Too Many Requests (per-tenant rate limit) to the "
                "candidate's requests: the look read nothing, the next one reads from the same point")
TIMEOUT = ("timeout", "Loki did not answer the baseline's requests within 30 s: the look read nothing, "
           "the next one reads from the same point")


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


def _steps(latency_bound):
    """The canary feature's level and contracts, the latency bound optionally replaced."""
    confidence, steps = calibration.feature_contracts(str(FEATURE))
    if latency_bound is not None:
        steps = [(f, {**a, "bound": latency_bound} if f is compare.step_latency_shift else a) for f, a in steps]
    return confidence, steps


def _judge(steps, base: compare.Sample, cand: compare.Sample, level: float) -> list:
    context = SimpleNamespace(slo_results=[], state=SimpleNamespace(
        comparison=calibration.comparison_of(base, cand), confidence=level))
    for func, args in steps:
        try:
            func(context, **args)
        except AssertionError:
            pass  # a hold, recorded like any verdict
    return [{**j.as_json(), "logql": [q for q in j.logql if q]} for j in context.slo_results]


def _reason(verdict: str, index: int, contracts: list) -> str:
    def said(j):
        low = "-inf" if j["low"] is None else compare.value_text(j["low"], j["unit"])
        high = "+inf" if j["high"] is None else compare.value_text(j["high"], j["unit"])
        return (f"{j['contract']}: {compare.value_text(j['estimate'], j['unit'])} [{low}, {high}], "
                f"bound {compare.value_text(j['bound'], j['unit'])}")
    if verdict == compare.HOLD:
        broken = [j for j in contracts if j["verdict"] == compare.HOLD]
        return f"confidently beyond its bound at look {index}: " + "; ".join(said(j) for j in broken)
    if verdict == compare.PROMOTE:
        return f"every contract confidently within its bound at look {index}"
    open_ = [j for j in contracts if j["verdict"] == compare.INCONCLUSIVE]
    return (f"waiting: {len(open_)} of {len(contracts)} contracts not yet decided at look {index} "
            f"({', '.join(j['contract'].split(' (')[0] for j in open_)})")


def replay(latency_factor: float = 1.0, interval_s: float = 15.0, deadline_s: float = 300.0,
           warmup_s: float = 10.0, stop_after: int | None = None, faults: dict | None = None,
           latency_bound: float | None = None) -> dict:
    """The watch document after the replay's last look (see the module's docstring).
    `faults`: {look index: (fault kind, text)}: that look read nothing."""
    faults = faults or {}
    base_name, cand_name = versions()
    lines = log_lines()
    confidence, steps = _steps(latency_bound)
    planned = int(deadline_s // interval_s)
    level = 1 - (1 - confidence) / planned
    started = lines[0][0]
    first = {}
    for at, version, _ in lines:
        first.setdefault(version, at)
    samples = {base_name: compare.Sample(), cand_name: compare.Sample()}
    doc = {"kind": "watch", "verdict": "watching", "final": False, "reason": "waiting for the first look",
           "function": "classifier", "baseline": base_name, "candidate": cand_name,
           "source": f"log file {LOG.relative_to(REPO)} (replayed in time order)",
           "started_at": started, "deadline_at": started + deadline_s, "interval_s": interval_s,
           "planned_looks": planned, "confidence": confidence, "look_confidence": level, "warmup_s": warmup_s,
           "decided_look": None, "decided_at": None, "data_fault": None, "fault_kind": None,
           "requests": {"baseline": 0, "candidate": 0}, "contracts": [], "looks": [], "errors": []}
    read = 0  # lines[:read] have been read
    last = min(planned, stop_after or planned)
    for index in range(1, last + 1):
        at = started + index * interval_s
        look = {"index": index, "at": at, "status": "ok", "fault": None, "new_lines": None,
                "requests": dict(doc["requests"]), "verdict": "watching", "contracts": []}
        doc["looks"].append(look)
        if index in faults:
            look["status"] = "data-fault"
            doc["fault_kind"], look["fault"] = faults[index]
            doc["data_fault"] = look["fault"]
            doc["reason"] = f"look {index} could not read the data: it decides nothing"
            continue
        doc["data_fault"] = doc["fault_kind"] = None
        new = {base_name: 0, cand_name: 0}
        while read < len(lines) and lines[read][0] <= at:
            when, version, fields = lines[read]
            read += 1
            new[version] += 1
            if when < first[version] + warmup_s:
                continue
            if version == cand_name and latency_factor != 1.0:
                fields = {**fields, "latency_ms": str(float(fields["latency_ms"]) * latency_factor)}
            samples[version].add(fields)
        look["new_lines"] = {"baseline": new[base_name], "candidate": new[cand_name]}
        silent = [side for side, count in look["new_lines"].items() if not count]
        if silent:
            look["status"] = "no-new-data"
            doc["reason"] = f"look {index}: no new request from the {' or the '.join(silent)}"
            continue
        look["requests"] = doc["requests"] = {"baseline": samples[base_name].requests,
                                              "candidate": samples[cand_name].requests}
        judged = _judge(steps, samples[base_name], samples[cand_name], level)
        look["contracts"] = [{k: j[k] for k in LOOK_KEYS} for j in judged]
        doc["contracts"] = judged
        overall = compare.verdict([SimpleNamespace(**j) for j in judged], [])
        doc["reason"] = _reason(overall, index, judged)
        if overall in (compare.HOLD, compare.PROMOTE):
            look["verdict"] = overall
            doc.update(verdict=overall, final=True, decided_look=index, decided_at=at)
            return doc
    if last == planned:  # the deadline
        doc["final"] = True
        if doc["looks"][-1]["status"] == "data-fault":
            doc["verdict"], doc["reason"] = "broken", "the data was failing at the deadline: nothing decided"
        else:
            doc["verdict"] = "inconclusive"
            open_ = [j for j in doc["contracts"] if j["verdict"] == compare.INCONCLUSIVE]
            doc["reason"] = "deadline reached with undecided contracts: " + "; ".join(
                f"{j['contract'].split(' (')[0]}: {compare.what_would_decide(j, doc)}" for j in open_)
    return doc


def not_started(error: str) -> dict:
    """The document of a watch that could not run at all (broken, no look)."""
    base, cand = versions()
    return {"kind": "watch", "verdict": "broken", "final": True, "reason": f"the watch could not run: {error}",
            "function": "classifier", "baseline": base, "candidate": cand, "source": "log file missing.jsonl",
            "started_at": log_lines()[0][0], "deadline_at": log_lines()[0][0] + 300, "interval_s": 15.0,
            "planned_looks": 20, "confidence": 0.99, "look_confidence": 0.9995, "warmup_s": 10.0,
            "decided_look": None, "decided_at": None, "data_fault": None, "fault_kind": None,
            "requests": {"baseline": 0, "candidate": 0}, "contracts": [], "looks": [], "errors": [error]}
