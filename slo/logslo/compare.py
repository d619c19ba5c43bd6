"""`torchfaas-slo compare`: judge a candidate model version against a baseline.

Both versions are read over the same window, from the same log or Loki: their figures
with the LogQL of the SLO contracts (queries.py), and their requests one by one (a log
query, `backend.lines`), from which each comparison contract is decided with a
confidence interval that knows both sample sizes (judge.py). The comparison contracts
are Gherkin (e.g. functions/classifier/compare/*.feature): the bounds and the confidence level are lines
of their text. The hooks write the reports:

    report.md    for a pull-request comment or a job summary
    report.json  both versions' figures, each contract's estimate, interval, verdict and LogQL
    report.html  the same with inline SVG charts (html.py)

The verdict, and the command's exit code: promote (0) when every contract is confidently
within its bound; hold (1) when one is confidently beyond it; inconclusive (2) when the
data cannot tell (the report says how many requests would); broken (3) when the run
itself failed (no source, Loki failing, a version with no requests, a step error).
"""

from __future__ import annotations

import math
import os
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from types import SimpleNamespace

from . import judge, queries, report, settings
from .contracts import fmt, window_name
from .hooks import Hooks
from .logfile import parse_rfc3339_ns
from .promql_math import quantile
from .psi import psi
from .steps import step_table
from .vectors import by_label

PROMOTE, HOLD, INCONCLUSIVE, BROKEN = judge.PROMOTE, judge.HOLD, judge.INCONCLUSIVE, "broken"
EXIT_CODES = {PROMOTE: 0, HOLD: 1, INCONCLUSIVE: 2, BROKEN: 3}
PERCENTILES = (0.5, 0.95, 0.99)
DEFAULT_CONFIDENCE = 0.99
POWER = 0.95  # the report's "detectable change": held this often at this sample size


@dataclass
class Sample:
    """One version's requests in the window, as the judge needs them."""

    latency_ms: list = field(default_factory=list)
    seconds: list = field(default_factory=list)  # each request's unix time (nan: none logged)
    faults: int = 0  # 5xx
    rejections: int = 0  # 4xx
    answers: list = field(default_factory=list)  # the fields of each 200's line

    @property
    def classes(self) -> Counter:
        """The top-1 class of each 200 that names one."""
        return Counter(fields["top1_class"] for fields in self.answers if fields.get("top1_class"))

    def values(self, name: str) -> list:
        """The numeric `name` field of each 200 (a regression's prediction_mean, say)."""
        out = []
        for fields in self.answers:
            try:
                out.append(float(fields[name]))
            except (KeyError, TypeError, ValueError):
                continue
        return [v for v in out if math.isfinite(v)]

    @property
    def requests(self) -> int:
        return len(self.latency_ms)

    def rate(self) -> float | None:
        """Requests per second over the span the version was served."""
        known = [t for t in self.seconds if not math.isnan(t)]
        if len(known) < 2 or max(known) == min(known):
            return None
        return (len(known) - 1) / (max(known) - min(known))

    def add(self, fields: dict) -> None:
        try:
            latency, status = float(fields["latency_ms"]), int(fields["status"])
        except (KeyError, ValueError):
            return  # not a request the contracts count (no latency_ms: dropped by unwrap too)
        try:
            at = parse_rfc3339_ns(fields.get("timestamp", "")) / 1e9
        except ValueError:
            at = math.nan
        self.latency_ms.append(latency)
        self.seconds.append(at)
        self.faults += status >= 500
        self.rejections += 400 <= status < 500
        if status == 200:
            self.answers.append(fields)


class Comparison:
    """The two versions' figures and samples over one window, each query asked once."""

    def __init__(self, backend, function: str, at: float, window_s: int, baseline: str, candidate: str,
                 process_sd: float = 0.0):
        self.backend, self.function, self.at, self.window_s = backend, function, at, window_s
        # the latency shift's sd between two process starts of one code (COMPARE_PROCESS_SD;
        # make review: each side is one process)
        self.process_sd = process_sd
        self.baseline, self.candidate = baseline, candidate
        self.logql: dict = {}  # figure -> LogQL text
        self.figures = {baseline: {}, candidate: {}}
        self.samples = {baseline: Sample(), candidate: Sample()}
        self._measure()
        self._read_samples()
        from .timeline import latency_timeline
        timeline = latency_timeline(backend, function, at, window_s)
        self.timeline = {**timeline, **{k: {ver: pts for ver, pts in timeline[k].items() if ver in self.versions}
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

    def _read_samples(self):
        for version in self.versions:
            logs = queries.version_requests(self.function, version)
            self.logql[f"requests of {version}"] = logs.render()
            for fields in self.backend.lines(logs, self.at - self.window_s, self.at):
                self.samples[version].add(fields)

    def figure(self, version, name):
        value = self.figures[version].get(name)
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else value

    def deltas(self) -> dict:
        out = {}
        for name in ("requests", *(f"p{phi * 100:g}_ms" for phi in PERCENTILES), "ratio_5xx", "ratio_4xx"):
            base, cand = self.figure(self.baseline, name), self.figure(self.candidate, name)
            out[name] = None if base is None or cand is None else cand - base
        base, cand = self.figures[self.baseline]["class_shares"], self.figures[self.candidate]["class_shares"]
        out["class_mix_psi"] = psi(cand, base) if base and cand else None
        return out

    def rate(self) -> float | None:
        """The slower version's requests per second: how fast more data would come."""
        rates = [r for r in (s.rate() for s in self.samples.values()) if r]
        return min(rates) if len(rates) == 2 else None


# -- the comparison contracts -----------------------------------------------------------

@dataclass
class Judgement:
    """One comparison contract decided: its figure's estimate and interval against the bound."""

    contract: str
    unit: str  # "x%" relative change, "points" ratio difference, "share" of answers, "requests"
    bound: float
    verdict: str
    estimate: float | None = None
    low: float | None = None
    high: float | None = None
    confidence: float | None = None
    detectable: float | None = None  # the change held POWER of the time at this sample size
    needed_requests: int | None = None  # a version, to decide an inconclusive contract
    note: str = ""
    logql: list = field(default_factory=list)

    def as_json(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


def _judged(contract, unit, bound, interval, c: Comparison, logql, note="", log_scale=False) -> Judgement:
    verdict = judge.decide(interval, bound)
    scale = judge.sample_scale_to_decide(interval, bound)
    n = min(s.requests for s in c.samples.values())
    return Judgement(contract, unit, bound, verdict, interval.estimate, interval.low, interval.high,
                     interval.confidence, judge.detectable_change(interval, bound, POWER, log_scale),
                     None if scale is None else math.ceil(n * scale), note, logql)


def enough_requests(c: Comparison, at_least: int) -> Judgement:
    n = {v: c.samples[v].requests for v in c.versions}
    fewest = min(n.values())
    return Judgement(f"each version served at least {at_least} requests", "requests", at_least,
                     PROMOTE if fewest >= at_least else INCONCLUSIVE, estimate=fewest,
                     needed_requests=None if fewest >= at_least else at_least,
                     note=f"baseline {n[c.baseline]}, candidate {n[c.candidate]}",
                     logql=[c.logql[f"requests of {v}"] for v in c.versions])


def latency_shift(c: Comparison, at_most_pct: float, confidence: float) -> Judgement:
    b, k = c.samples[c.baseline], c.samples[c.candidate]
    timed = not any(math.isnan(t) for t in b.seconds + k.seconds)
    deff = judge.design_effect(b.latency_ms, b.seconds, k.latency_ms, k.seconds) if timed else 1.0
    interval = judge.latency_shift(b.latency_ms, k.latency_ms, confidence, widen=math.sqrt(deff),
                                   process_sd=c.process_sd)
    note = f"median {fmt(quantile(0.5, k.latency_ms), 'ms')} vs {fmt(quantile(0.5, b.latency_ms), 'ms')}"
    if deff > 1:
        note += f"; interval widened x{math.sqrt(deff):.2f}: requests close in time are alike"
    if c.process_sd:
        note += f"; with {c.process_sd:.1%} between process starts"
    return _judged("latency of the candidate vs the baseline (all requests, Hodges-Lehmann)", "x%",
                   at_most_pct / 100, interval, c, [c.logql[f"requests of {v}"] for v in c.versions], note,
                   log_scale=True)


def latency_quantile(c: Comparison, phi: float, at_most_pct: float, confidence: float) -> Judgement:
    name = f"p{phi * 100:g} latency"
    base, cand = c.samples[c.baseline].latency_ms, c.samples[c.candidate].latency_ms
    interval = judge.quantile_change(base, cand, phi, confidence)
    return _judged(f"{name} of the candidate vs the baseline", "x%", at_most_pct / 100, interval, c,
                   [c.logql[name]], f"{fmt(quantile(phi, cand), 'ms')} vs {fmt(quantile(phi, base), 'ms')}",
                   log_scale=True)


def status_ratio(c: Comparison, kind: str, at_most_points: float, confidence: float) -> Judgement:
    """The candidate's 5xx (or 4xx) ratio minus the baseline's."""
    count = {"5xx": lambda s: s.faults, "4xx": lambda s: s.rejections}[kind]
    b, k = c.samples[c.baseline], c.samples[c.candidate]
    interval = judge.ratio_difference(count(b), b.requests, count(k), k.requests, confidence)
    return _judged(f"{kind} ratio of the candidate minus the baseline's", "points", at_most_points / 100, interval,
                   c, [c.logql[f"{kind} ratio"]], f"{count(k)}/{k.requests} vs {count(b)}/{b.requests}")


def class_mix(c: Comparison, at_most_pct: float, confidence: float) -> Judgement:
    base, cand = c.samples[c.baseline].classes, c.samples[c.candidate].classes
    interval = judge.mix_distance(base, cand, confidence)
    nb, nc = sum(base.values()), sum(cand.values())
    movers = sorted(set(base) | set(cand), key=lambda k: -abs(cand[k] / nc - base[k] / nb))[:3]
    return _judged("answers whose class differs between the mixes (total variation)", "share", at_most_pct / 100,
                   interval, c, [c.logql[f"class shares of {v}"] for v in c.versions],
                   "biggest moves: " + ", ".join(f"{k!r} {fmt(base[k] / nb, '%')}->{fmt(cand[k] / nc, '%')}"
                                                 for k in movers))


def value_mean(c: Comparison, name: str, at_most_pct: float, confidence: float) -> Judgement:
    """How far the candidate's mean `name` (a numeric field of each 200) is from the
    baseline's, either way: a regression that predicts higher or lower on the same inputs."""
    base, cand = c.samples[c.baseline].values(name), c.samples[c.candidate].values(name)
    missing = [v for v, values in ((c.baseline, base), (c.candidate, cand)) if len(values) < 2]
    if missing:
        raise LookupError(f"model version {', '.join(missing)} logged fewer than two numeric {name!r} "
                          "on its 200 answers: is it a field of this function's log line?")
    signed = judge.mean_change(base, cand, confidence)
    note = (f"mean {sum(cand) / len(cand):.4g} vs {sum(base) / len(base):.4g}: "
            f"{fmt(signed.estimate, 'x%')} [{fmt(signed.low, 'x%')}, {fmt(signed.high, 'x%')}] either way")
    return _judged(f"mean {name} of the candidate vs the baseline, either way", "x%", at_most_pct / 100,
                   judge.magnitude(signed), c, [c.logql[f"requests of {v}"] for v in c.versions], note)


# -- the verdict and the reports --------------------------------------------------------

def verdict(judgements: list, errors: list) -> str:
    if errors or not judgements:
        return BROKEN
    found = {j.verdict for j in judgements}
    return HOLD if HOLD in found else INCONCLUSIVE if INCONCLUSIVE in found else PROMOTE


def document(comparison: Comparison | None, judgements: list, errors: list, source: str, at: float,
             baseline: str, candidate: str, window_s: int | None, context_note: str = "") -> dict:
    c = comparison
    doc = {
        "verdict": verdict(judgements, errors),
        "baseline": baseline,
        "candidate": candidate,
        "evaluated_at": at,
        "window_s": window_s,
        "source": source,
        "traffic": context_note,
        "requests_per_second": c.rate() if c else None,
        "figures": c.figures if c else {},
        "deltas": c.deltas() if c else {},
        "contracts": [j.as_json() for j in judgements],
        "logql": c.logql if c else {},
        "timeline": c.timeline if c else {},
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
    PROMOTE: "PROMOTE: the candidate is confidently within every contract",
    HOLD: "HOLD: the candidate is confidently worse than a contract allows",
    INCONCLUSIVE: "INCONCLUSIVE: the data cannot tell yet",
    BROKEN: "BROKEN: the comparison could not run",
}
ICONS = {PROMOTE: "✅", HOLD: "❌", INCONCLUSIVE: "⚠️", BROKEN: "💥"}


def value_text(value, unit) -> str:
    if value is None:
        return "-"
    if unit == "share":
        return f"{value * 100:.3g}%"
    return fmt(value, unit)


def interval_text(j: dict) -> str:
    """`+3.1% [-2.0%, +8.4%]` (the interval's bounds; an open side is ±inf)."""
    if j["unit"] == "requests":
        return value_text(j["estimate"], "requests")
    low = "-inf" if j["low"] is None else value_text(j["low"], j["unit"])
    high = "+inf" if j["high"] is None else value_text(j["high"], j["unit"])
    return f"{value_text(j['estimate'], j['unit'])} [{low}, {high}]"


def what_would_decide(j: dict, doc: dict) -> str:
    """For an inconclusive contract: how many requests a version would decide it, and how
    long that takes at this window's rate (make review: the REVIEW_SECONDS to set)."""
    needed = j.get("needed_requests")
    if not needed:
        return "the estimate sits on the bound: no amount of traffic decides it"
    text = f"about {needed} requests a version would decide it"
    rate = doc.get("requests_per_second")
    if rate:
        seconds = needed / rate
        text += f" (~{seconds:.0f} s of traffic at this run's {rate:.1f} req/s a version"
        review_s = doc.get("review_seconds")
        if review_s:
            text += f"; make review REVIEW_SECONDS={math.ceil(max(seconds, review_s) / 10) * 10}"
        text += ")"
    return text


def verdict_words(j: dict, doc: dict) -> str:
    if j["verdict"] == PROMOTE:
        return "promote"
    if j["verdict"] == HOLD:
        return "**HOLD**: the whole interval is above the bound"
    return "**inconclusive**: " + what_would_decide(j, doc)


def power_text(j: dict) -> str:
    if j["unit"] == "requests" or j.get("detectable") is None:
        return ""
    return f"held {POWER:.0%} of the time at this size: {value_text(j['detectable'], j['unit'])}"


def markdown(doc: dict) -> str:
    base, cand = doc["baseline"], doc["candidate"]
    window = window_name(doc["window_s"]) if doc.get("window_s") else "-"
    lines = [f"### {ICONS[doc['verdict']]} {HEADLINE[doc['verdict']]}", "",
             f"Candidate `{cand}` vs baseline `{base}`, {window} up to {report.evaluation_time(doc['evaluated_at'])}, "
             f"from {doc['source']}."]
    if doc.get("traffic"):
        lines.append(f"Traffic: {doc['traffic']}.")
    lines.append("")
    if doc["contracts"]:
        confidence = next((j["confidence"] for j in doc["contracts"] if j.get("confidence")), None)
        level = f" ({confidence:.0%} interval)" if confidence else ""
        lines += [f"| contract | estimate{level} | bound | verdict | detectable change |", "|---|---|---:|---|---|"]
        for j in doc["contracts"]:
            note = f" ({j['note']})" if j.get("note") else ""
            word = "at least" if j["unit"] == "requests" else "at most"
            lines.append(f"| {j['contract']}{note} | {interval_text(j)} | {word} {value_text(j['bound'], j['unit'])} | "
                         f"{verdict_words(j, doc)} | {power_text(j)} |")
        lines.append("")
    figures, deltas = doc["figures"], doc["deltas"]
    if figures:
        lines += ["<details><summary>figures (LogQL, as the SLO contracts measure them)</summary>", "",
                  "| figure | baseline | candidate | change |", "|---|---:|---:|---:|"]
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
        if psi_value is not None:  # a function without classes has no mix to compare
            lines.append(f"| class mix PSI | | | {psi_value:.4g} |")
        lines += ["", "</details>", ""]
    for error in doc["errors"]:
        lines.append(f"- error (not judged): {error}")
    if doc["errors"]:
        lines.append("")
    return "\n".join(lines)


def _num(value, unit):
    return "-" if value is None else fmt(value, unit)


def human(doc: dict) -> str:
    lines = [HEADLINE[doc["verdict"]]]
    if doc.get("traffic"):
        lines.append(f"traffic: {doc['traffic']}")
    for j in doc["contracts"]:
        note = f" [{j['note']}]" if j.get("note") else ""
        word = "at least" if j["unit"] == "requests" else "at most"
        lines.append(f"{j['verdict'].upper():12s} {j['contract']}: {interval_text(j)} "
                     f"(bound: {word} {value_text(j['bound'], j['unit'])}){note}")
        if j["verdict"] == INCONCLUSIVE:
            lines.append(f"             -> {what_would_decide(j, doc)}")
        if power_text(j):
            lines.append(f"             {power_text(j)}")
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
        context.process_sd = float(self.env.get("COMPARE_PROCESS_SD") or 0.0)
        # one object made at the root level: behave drops what a step sets on context
        # when its scenario ends, the comparison must outlive the scenarios
        context.state = SimpleNamespace(comparison=None, window=None, problem=None, confidence=DEFAULT_CONFIDENCE)
        try:
            context.slo = settings.from_env(self.env)
        except settings.SettingsError as err:
            context.slo = None
            context.slo_errors.append(str(err))
            return
        print(f"comparing {context.candidate} (candidate) with {context.baseline} (baseline) at "
              f"{report.evaluation_time(context.slo.at)} against {context.slo.backend.describe()}")

    def after_all(self, context):
        source = context.slo.backend.describe() if context.slo else "nothing (not configured)"
        at = context.slo.at if context.slo else 0.0
        doc = document(context.state.comparison, context.slo_results, context.slo_errors, source, at,
                       context.baseline, context.candidate, context.state.window,
                       self.env.get("COMPARE_CONTEXT", ""))
        if self.env.get("COMPARE_REVIEW_SECONDS"):
            doc["review_seconds"] = float(self.env["COMPARE_REVIEW_SECONDS"])
        out = sys.__stdout__
        print("\n" + human(doc), file=out)
        if doc.get("timeline") is not None and self.env.get("SLO_P99_MS"):
            doc["timeline"]["slo_p99_ms"] = float(self.env["SLO_P99_MS"])
        directory = self.env.get("COMPARE_REPORT") or "reports/compare"
        for path in write_reports(directory, doc):
            print(f"report written to {path}", file=out)


# -- behave steps -----------------------------------------------------------------------

STEPS, given, when, then = step_table()


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


def _judge(context, judgement: Judgement):
    context.slo_results.append(judgement)
    # behave's own pass/fail follows the verdict; the command's exit code comes from report.json
    assert judgement.verdict != HOLD, f"comparison contract broken: {judgement.contract}: " \
        f"{interval_text(judgement.as_json())}, bound {value_text(judgement.bound, judgement.unit)}"


@given("a confidence level of {level}")
def step_confidence(context, level):
    from .steps import parse_percent
    value = parse_percent(level)
    if not 0.5 <= value < 1:
        raise ValueError(f"a confidence level is between 50% and 100%, got {level!r}")
    context.state.confidence = value


@when("I compare the requests of the last {window}")
def step_compare(context, window):
    from .steps import parse_window
    window_s = parse_window(window)
    if not context.baseline or not context.candidate:
        raise settings.SettingsError("set COMPARE_BASELINE and COMPARE_CANDIDATE (the two model versions)")
    state = context.state
    if state.window != window_s:
        state.comparison, state.window, state.problem = None, window_s, None
        try:
            comparison = Comparison(context.slo.backend, context.function, context.slo.at, window_s,
                                    context.baseline, context.candidate, context.process_sd)
        except Exception as err:  # Loki failing: every scenario reports it, none asks again
            state.problem = f"{type(err).__name__}: {err}"
            raise
        silent = [v for v in comparison.versions if not comparison.samples[v].requests]
        if silent:  # a misspelt version or a window that misses the run: nothing to compare
            state.problem = (f"no request of model version {', '.join(silent)} in the {window_name(window_s)} "
                             f"up to {report.evaluation_time(context.slo.at)}")
        else:
            state.comparison = comparison
    if state.problem:
        raise LookupError(state.problem)


@then("each version served at least {count:d} requests")
def step_enough(context, count):
    _judge(context, enough_requests(_comparison(context), count))


@then("the candidate's latency is at most {bound:g}% above the baseline's")
def step_latency_shift(context, bound):
    _judge(context, latency_shift(_comparison(context), bound, context.state.confidence))


@then("the candidate's p{pct:g} latency is at most {bound:g}% above the baseline's")
def step_latency_quantile(context, pct, bound):
    _judge(context, latency_quantile(_comparison(context), pct / 100, bound, context.state.confidence))


@then("the candidate's server-error ratio (5xx) is at most {bound:g} points above the baseline's")
@then("the candidate's server-error ratio (5xx) is at most {bound:g} point above the baseline's")
def step_5xx(context, bound):
    _judge(context, status_ratio(_comparison(context), "5xx", bound, context.state.confidence))


@then("the candidate's client-error ratio (4xx) is at most {bound:g} points above the baseline's")
@then("the candidate's client-error ratio (4xx) is at most {bound:g} point above the baseline's")
def step_4xx(context, bound):
    _judge(context, status_ratio(_comparison(context), "4xx", bound, context.state.confidence))


@then("the candidate's class mix differs from the baseline's in at most {bound:g}% of answers")
def step_mix(context, bound):
    _judge(context, class_mix(_comparison(context), bound, context.state.confidence))


@then("the candidate's mean \"{name}\" is at most {bound:g}% away from the baseline's")
def step_value_mean(context, name, bound):
    _judge(context, value_mean(_comparison(context), name, bound, context.state.confidence))
