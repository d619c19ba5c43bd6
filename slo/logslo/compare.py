"""`torchfaas-slo compare`: judge a candidate model version against a baseline.

Both versions are measured over the same window, from the same log or Loki, with the
LogQL of the SLO contracts (queries.py), so the file and Loki backends give the same
numbers. The comparison contracts are Gherkin (e.g. slo/compare/*.feature) with their
thresholds in the text; the steps here judge them and the hooks write the reports:

    report.md    for a pull-request comment or a job summary
    report.json  both versions' figures, the deltas, each contract's verdict and LogQL
    report.html  the same with inline SVG charts (html.py)

The verdict: "promote" (every contract holds), "hold" (a contract is broken) or
"cannot judge" (too few requests, no data, Loki unreachable or erroring); the command
exits 0, 1 or 2 accordingly.
"""

from __future__ import annotations

import math
import os
import sys
import time
from types import SimpleNamespace

from . import queries, report, settings
from .contracts import ContractResult, fmt, window_name
from .hooks import Hooks
from .psi import biggest_movers, psi
from .steps import step_table
from .vectors import by_label

PROMOTE, HOLD, CANNOT_JUDGE = "promote", "hold", "cannot judge"
EXIT_CODES = {PROMOTE: 0, HOLD: 1, CANNOT_JUDGE: 2}
PERCENTILES = (0.5, 0.95, 0.99)


class Comparison:
    """The two versions' figures over one window, each query asked once."""

    def __init__(self, backend, function: str, at: float, window_s: int, baseline: str, candidate: str):
        self.backend, self.function, self.at, self.window_s = backend, function, at, window_s
        self.baseline, self.candidate = baseline, candidate
        self.logql: dict = {}  # figure -> LogQL text
        self.figures = {baseline: {}, candidate: {}}
        self._measure()
        from .timeline import latency_timeline
        self.timeline = latency_timeline(backend, function, at, window_s)
        self.timeline = {**self.timeline, **{k: {ver: pts for ver, pts in self.timeline[k].items()
                                                 if ver in self.versions}
                                             for k in ("p50_ms", "p99_ms")}}

    @property
    def versions(self):
        return (self.baseline, self.candidate)

    def _ask(self, name, query):
        self.logql[name] = query.render()
        return self.backend.instant(query, self.at)

    def _measure(self):
        f, w, v = self.function, self.window_s, (queries.VERSION,)
        counts = by_label(self._ask("requests", queries.requests(f, w, by=v)), queries.VERSION)
        latency = {phi: by_label(self._ask(f"p{phi * 100:g} latency", queries.latency_quantile(f, phi, w, by=v)),
                                 queries.VERSION) for phi in PERCENTILES}
        ratio5 = by_label(self._ask("5xx ratio", queries.error_ratio_5xx(f, w, by=v)), queries.VERSION)
        ratio4 = by_label(self._ask("4xx ratio", queries.status_ratio(f, w, 400, 500, by=v)), queries.VERSION)
        for version in self.versions:
            n = counts.get(version, 0.0)
            shares_query = queries.class_share(f, w, version=version)
            shares = by_label(self._ask(f"class shares of {version}", shares_query), "top1_class") if n else {}
            self.figures[version] = {
                "requests": n,
                **{f"p{phi * 100:g}_ms": latency[phi].get(version) for phi in PERCENTILES},
                # a version with traffic but no 5xx (4xx) is absent from the ratio: 0
                "ratio_5xx": ratio5.get(version, 0.0) if n else None,
                "ratio_4xx": ratio4.get(version, 0.0) if n else None,
                "class_shares": dict(sorted(shares.items(), key=lambda kv: (-kv[1], kv[0]))),
            }

    def figure(self, version, name):
        value = self.figures[version].get(name)
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else value

    def deltas(self) -> dict:
        out = {}
        for name in ("requests", *(f"p{phi * 100:g}_ms" for phi in PERCENTILES), "ratio_5xx", "ratio_4xx"):
            base, cand = self.figure(self.baseline, name), self.figure(self.candidate, name)
            out[name] = None if base is None or cand is None else cand - base
        out["class_mix_psi"] = self.class_psi()
        return out

    def class_psi(self):
        base = self.figures[self.baseline]["class_shares"]
        cand = self.figures[self.candidate]["class_shares"]
        return psi(cand, base) if base and cand else None


# -- the comparison contracts -----------------------------------------------------------

def enough_requests(c: Comparison, at_least: int) -> list:
    return [ContractResult(f"requests to model version {v} ({role}), {window_name(c.window_s)}",
                           c.figures[v]["requests"], at_least, ">=", "requests", [c.logql["requests"]])
            for role, v in (("baseline", c.baseline), ("candidate", c.candidate))]


def latency_relative(c: Comparison, phi: float, at_most_pct: float) -> ContractResult:
    name = f"p{phi * 100:g} latency"
    base, cand = c.figure(c.baseline, f"p{phi * 100:g}_ms"), c.figure(c.candidate, f"p{phi * 100:g}_ms")
    change = None if base is None or cand is None or base <= 0 else cand / base - 1
    result = ContractResult(f"{name} of the candidate vs the baseline", change, at_most_pct / 100, "<=", "x%",
                            [c.logql[name]])
    if base is not None and cand is not None:
        result.note = f"{fmt(cand, 'ms')} vs {fmt(base, 'ms')}"
    return result


def latency_absolute(c: Comparison, phi: float, at_most_ms: float) -> ContractResult:
    name = f"p{phi * 100:g} latency"
    base, cand = c.figure(c.baseline, f"p{phi * 100:g}_ms"), c.figure(c.candidate, f"p{phi * 100:g}_ms")
    change = None if base is None or cand is None else cand - base
    result = ContractResult(f"{name} of the candidate minus the baseline's", change, at_most_ms, "<=", "ms",
                            [c.logql[name]])
    if change is not None:
        result.note = f"{fmt(cand, 'ms')} vs {fmt(base, 'ms')}"
    return result


def ratio_points(c: Comparison, kind: str, at_most_points: float) -> ContractResult:
    key = {"5xx": "ratio_5xx", "4xx": "ratio_4xx"}[kind]
    base, cand = c.figure(c.baseline, key), c.figure(c.candidate, key)
    change = None if base is None or cand is None else cand - base
    result = ContractResult(f"{kind} ratio of the candidate minus the baseline's", change, at_most_points / 100,
                            "<=", "points", [c.logql[f"{kind} ratio"]])
    if change is not None:
        result.note = f"{fmt(cand, '%')} vs {fmt(base, '%')}"
    return result


def class_mix(c: Comparison, at_most_psi: float) -> ContractResult:
    value = c.class_psi()
    result = ContractResult("class mix of the candidate vs the baseline (PSI)", value, at_most_psi, "<=", "",
                            [c.logql[f"class shares of {c.baseline}"], c.logql[f"class shares of {c.candidate}"]]
                            if f"class shares of {c.candidate}" in c.logql and f"class shares of {c.baseline}" in c.logql
                            else [])
    if value is not None:
        movers = biggest_movers(c.figures[c.candidate]["class_shares"], c.figures[c.baseline]["class_shares"])
        result.note = "biggest moves: " + ", ".join(f"{n!r} {fmt(b, '%')}->{fmt(a, '%')}" for n, b, a in movers)
    return result


# -- the verdict and the reports --------------------------------------------------------

def verdict(results: list, errors: list) -> str:
    if errors or any(r.measured is None for r in results):
        return CANNOT_JUDGE
    if any(not r.passed and getattr(r, "gate", False) for r in results):
        return CANNOT_JUDGE  # too few requests: not a judgement on the candidate
    if not results:
        return CANNOT_JUDGE
    return PROMOTE if all(r.passed for r in results) else HOLD


def document(comparison: Comparison | None, results: list, errors: list, source: str, at: float,
             baseline: str, candidate: str, window_s: int | None) -> dict:
    doc = {
        "verdict": verdict(results, errors),
        "baseline": baseline,
        "candidate": candidate,
        "evaluated_at": at,
        "window_s": window_s,
        "source": source,
        "figures": comparison.figures if comparison else {},
        "deltas": comparison.deltas() if comparison else {},
        "contracts": [dict(r.as_json(), cannot_judge=bool(getattr(r, "gate", False))) for r in results],
        "logql": comparison.logql if comparison else {},
        "timeline": comparison.timeline if comparison else {},
        "errors": errors,
    }
    return _clean(doc)  # JSON has no NaN: a figure that could not be measured is null


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


HEADLINE = {
    PROMOTE: "PROMOTE: the candidate behaves like the baseline",
    HOLD: "HOLD: the candidate breaks a comparison contract",
    CANNOT_JUDGE: "CANNOT JUDGE: not enough data to compare",
}


def _num(value, unit):
    return "-" if value is None else fmt(value, unit)


def markdown(doc: dict) -> str:
    base, cand = doc["baseline"], doc["candidate"]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(doc["evaluated_at"]))
    window = window_name(doc["window_s"]) if doc.get("window_s") else "-"
    icon = {PROMOTE: "✅", HOLD: "❌", CANNOT_JUDGE: "⚠️"}[doc["verdict"]]
    lines = [f"### {icon} {HEADLINE[doc['verdict']]}", "",
             f"Candidate `{cand}` vs baseline `{base}`, {window} up to {stamp}, from {doc['source']}.", ""]
    figures, deltas = doc["figures"], doc["deltas"]
    if figures:
        lines += ["| figure | baseline | candidate | change |", "|---|---:|---:|---:|"]
        rows = [("requests", "requests", "requests"), ("p50 latency", "p50_ms", "ms"), ("p95 latency", "p95_ms", "ms"),
                ("p99 latency", "p99_ms", "ms"), ("5xx ratio", "ratio_5xx", "%"), ("4xx ratio", "ratio_4xx", "%")]
        for label, key, unit in rows:
            b, c, d = figures[base].get(key), figures[cand].get(key), deltas.get(key)
            change = "-" if d is None else (fmt(d, "points") if unit == "%" else
                                            (f"{d:+.0f}" if unit == "requests" else f"{d:+.1f} ms"))
            if unit == "ms" and d is not None and b:
                change += f" ({d / b:+.0%})"
            lines.append(f"| {label} | {_num(b, unit)} | {_num(c, unit)} | {change} |")
        psi_value = deltas.get("class_mix_psi")
        lines.append(f"| class mix PSI | | | {'-' if psi_value is None else f'{psi_value:.4g}'} |")
        lines.append("")
        classes = list(dict.fromkeys(list(figures[base].get("class_shares", {}))[:8]
                                     + list(figures[cand].get("class_shares", {}))[:8]))
        if classes:
            lines += ["<details><summary>class mix (share of successful predictions)</summary>", "",
                      "| class | baseline | candidate |", "|---|---:|---:|"]
            for name in classes:
                lines.append(f"| {name} | {fmt(figures[base]['class_shares'].get(name, 0.0), '%')} | "
                             f"{fmt(figures[cand]['class_shares'].get(name, 0.0), '%')} |")
            lines += ["", "</details>", ""]
    if doc["contracts"]:
        lines += ["| contract | measured | bound | verdict |", "|---|---:|---:|---|"]
        for r in doc["contracts"]:
            word = "at most" if r["comparison"] == "<=" else "at least"
            measured = "no data" if r["measured"] is None else fmt(r["measured"], r["unit"])
            if r["passed"]:
                mark = "pass"
            else:
                mark = ("**cannot judge**: " if r.get("cannot_judge") or r["measured"] is None else "**FAIL**: ") + r["miss"]
            note = f" ({r['note']})" if r.get("note") else ""
            lines.append(f"| {r['contract']}{note} | {measured} | {word} {fmt(r['bound'], r['unit'])} | {mark} |")
        lines.append("")
    for error in doc["errors"]:
        lines.append(f"- error (not judged): {error}")
    if doc["errors"]:
        lines.append("")
    return "\n".join(lines)


def human(doc: dict) -> str:
    lines = [HEADLINE[doc["verdict"]]]
    for r in doc["contracts"]:
        measured = "no data" if r["measured"] is None else fmt(r["measured"], r["unit"])
        word = "at most" if r["comparison"] == "<=" else "at least"
        state = "PASS" if r["passed"] else ("CANNOT JUDGE" if r.get("cannot_judge") or r["measured"] is None else "FAIL")
        note = f" [{r['note']}]" if r.get("note") else ""
        lines.append(f"{state}  {r['contract']}: {measured} (bound: {word} {fmt(r['bound'], r['unit'])}){note}")
        if not r["passed"]:
            lines.append(f"      -> {r['miss']}")
    lines += [f"ERROR (not judged): {e}" for e in doc["errors"]]
    return "\n".join(lines)


def write_reports(directory: str, doc: dict) -> list:
    os.makedirs(directory, exist_ok=True)
    paths = []
    md = os.path.join(directory, "report.md")
    with open(md, "w", encoding="utf-8") as handle:
        handle.write(markdown(doc) + "\n")
    paths.append(md)
    js = os.path.join(directory, "report.json")
    report.write_json(js, doc)
    paths.append(js)
    from . import html
    page = os.path.join(directory, "report.html")
    with open(page, "w", encoding="utf-8") as handle:
        handle.write(html.compare_page(doc))
    paths.append(page)
    return paths


# -- behave hooks -----------------------------------------------------------------------

class CompareHooks(Hooks):
    """The check's hooks (before_scenario, after_step), with their own before_all (settings
    + COMPARE_BASELINE/CANDIDATE/REPORT) and after_all (the verdict and three reports)."""

    def __init__(self, env=None):
        super().__init__(os.environ if env is None else env)

    def before_all(self, context):
        context.slo_results, context.slo_errors = [], []
        context.baseline = self.env.get("COMPARE_BASELINE", "")
        context.candidate = self.env.get("COMPARE_CANDIDATE", "")
        # one object made at the root level: behave drops what a step sets on context
        # when its scenario ends, the comparison must outlive the scenarios
        context.state = SimpleNamespace(comparison=None, window=None)
        try:
            context.slo = settings.from_env(self.env)
        except settings.SettingsError as err:
            context.slo = None
            context.slo_errors.append(str(err))
            return
        print(f"comparing {context.candidate} (candidate) with {context.baseline} (baseline) at "
              f"{context.slo.at:g} against {context.slo.backend.describe()}")

    def after_all(self, context):
        source = context.slo.backend.describe() if context.slo else "nothing (not configured)"
        at = context.slo.at if context.slo else 0.0
        doc = document(context.state.comparison, context.slo_results, context.slo_errors, source, at,
                       context.baseline, context.candidate, context.state.window)
        out = sys.__stdout__
        print("\n" + human(doc), file=out)
        if doc.get("timeline") is not None and self.env.get("SLO_P99_MS"):
            doc["timeline"]["slo_p99_ms"] = float(self.env["SLO_P99_MS"])
        directory = self.env.get("COMPARE_REPORT") or "reports/compare"
        for path in write_reports(directory, doc):
            print(f"report written to {path}", file=out)


# -- behave steps -----------------------------------------------------------------------

STEPS, _given, when, then = step_table()


def register(registry=None) -> None:
    """The SLO steps (Given the function ...) and the comparison steps."""
    from . import steps
    if registry is None:
        from behave.runner import the_step_registry as registry
    steps.register(registry)
    for keyword, text, func in STEPS:
        registry.add_step_definition(keyword, text, func)


def _comparison(context) -> Comparison:
    if context.state.comparison is None:
        raise RuntimeError('say "When I compare the requests of the last <window>" first')
    return context.state.comparison


def _judge(context, results):
    results = results if isinstance(results, list) else [results]
    context.slo_results.extend(results)
    failed = [r for r in results if not r.passed]
    assert not failed, "comparison contract broken:\n" + "\n".join(
        f"  {r.contract}: {r.measured_text()}, {r.miss}" for r in failed)


@when("I compare the requests of the last {window}")
def step_compare(context, window):
    from .steps import parse_window
    window_s = parse_window(window)
    if not context.baseline or not context.candidate:
        raise settings.SettingsError("set COMPARE_BASELINE and COMPARE_CANDIDATE (the two model versions)")
    state = context.state
    if state.comparison is None or state.window != window_s:
        state.comparison = Comparison(context.slo.backend, context.function, context.slo.at, window_s,
                                      context.baseline, context.candidate)
        state.window = window_s


@then("each version served at least {count:d} requests")
def step_enough(context, count):
    results = enough_requests(_comparison(context), count)
    for r in results:
        r.gate = True  # too few requests: the comparison cannot judge, it does not hold
        if not r.passed:
            r.miss = f"too few requests to judge ({r.miss})"
    _judge(context, results)


@then("the candidate's p{pct:g} latency is at most {bound:g}% above the baseline's")
def step_latency_pct(context, pct, bound):
    _judge(context, latency_relative(_comparison(context), pct / 100, bound))


@then("the candidate's p{pct:g} latency is at most {bound:g} ms above the baseline's")
def step_latency_ms(context, pct, bound):
    _judge(context, latency_absolute(_comparison(context), pct / 100, bound))


@then("the candidate's server-error ratio (5xx) is at most {bound:g} points above the baseline's")
def step_5xx(context, bound):
    _judge(context, ratio_points(_comparison(context), "5xx", bound))


@then("the candidate's client-error ratio (4xx) is at most {bound:g} points above the baseline's")
def step_4xx(context, bound):
    _judge(context, ratio_points(_comparison(context), "4xx", bound))


@then("the candidate's class mix is within a PSI of {bound:g} of the baseline's")
def step_mix(context, bound):
    _judge(context, class_mix(_comparison(context), bound))
