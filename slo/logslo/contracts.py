"""Contract results: what was measured, against which bound, and by how much it missed.

A step in a .feature file asks a question (p99 per version, 5xx ratio, ...); the
functions here run the LogQL through whichever backend is configured and turn the
answer into ContractResult objects, one per thing judged (e.g. one per model version).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from . import queries
from .psi import biggest_movers, psi
from .vectors import by_label, single_value


@dataclass
class ContractResult:
    contract: str  # human name, e.g. "p99 latency, model version v1.3.0, last 1h"
    measured: float | None
    bound: float
    comparison: str  # "<=" (at most) or ">=" (at least)
    unit: str
    logql: list
    passed: bool = field(init=False)
    miss: str = field(init=False)  # "by how much", empty when passed
    note: str = ""

    def __post_init__(self):
        if self.measured is None or math.isnan(self.measured):
            self.passed, self.miss = False, "no data to judge"
            return
        ok = self.measured <= self.bound if self.comparison == "<=" else self.measured >= self.bound
        self.passed = bool(ok)
        self.miss = "" if ok else self._miss()

    def _miss(self) -> str:
        over = self.measured - self.bound
        side = "above" if over > 0 else "below"
        if self.unit in ("points", "x%"):  # already a difference: say it plainly
            return f"{fmt(abs(over), self.unit).lstrip('+')} {side} the bound"
        relative = f" ({abs(over) / abs(self.bound):.0%})" if self.bound else ""
        return f"{fmt(abs(over), self.unit)}{relative} {side} the bound"

    def measured_text(self) -> str:
        return "no data" if self.measured is None else fmt(self.measured, self.unit)

    def line(self) -> str:
        word = "at most" if self.comparison == "<=" else "at least"
        value = "no data" if self.measured is None else fmt(self.measured, self.unit)
        note = f" [{self.note}]" if self.note else ""
        bound = f"{word} {fmt(self.bound, self.unit)}"
        text = f"{'PASS' if self.passed else 'FAIL'}  {self.contract}: {value} (bound: {bound}){note}"
        return text if self.passed else f"{text}\n      -> {self.miss}"

    def as_json(self) -> dict:
        data = asdict(self)
        if data["measured"] is not None and not math.isfinite(data["measured"]):
            data["measured"] = str(data["measured"])  # JSON has no NaN/Inf
        return data


def fmt(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value * 100:.3g}%"
    if unit == "ms":
        return f"{value:.1f}".rstrip("0").rstrip(".") + " ms"
    if unit == "requests":
        return f"{value:.0f} requests"
    if unit == "points":  # a difference of two ratios, in percentage points
        return f"{value * 100:+.3g} points" if value else "0 points"
    if unit == "x%":  # a relative change
        return f"{value * 100:+.3g}%" if value else "0%"
    return f"{value:.4g}"


def window_name(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"last {seconds // 3600}h"
    return f"last {seconds // 60}m" if seconds % 60 == 0 else f"last {seconds}s"


# -- the four families of contracts ---------------------------------------------------

def latency_per_version(backend, function, at, window_s, phi, bound_ms) -> list:
    traffic = queries.requests(function, window_s, by=(queries.VERSION,))
    latency = queries.latency_quantile(function, phi, window_s, by=(queries.VERSION,))
    versions = by_label(backend.instant(traffic, at), queries.VERSION)
    measured = by_label(backend.instant(latency, at), queries.VERSION)
    pct = f"p{phi * 100:g}"
    if not versions:
        return [_no_traffic(f"{pct} latency of {function}", window_s, bound_ms, "ms",
                            [latency.render(), traffic.render()])]
    return [
        ContractResult(f"{pct} latency of {function} model version {v}, {window_name(window_s)}",
                       measured.get(v), bound_ms, "<=", "ms", [latency.render(), traffic.render()],
                       note=f"{versions[v]:.0f} requests")
        for v in sorted(versions)
    ]


def error_ratio_per_version(backend, function, at, window_s, bound_ratio) -> list:
    traffic = queries.requests(function, window_s, by=(queries.VERSION,))
    ratio = queries.status_ratio(function, window_s, 500, by=(queries.VERSION,))
    versions = by_label(backend.instant(traffic, at), queries.VERSION)
    measured = by_label(backend.instant(ratio, at), queries.VERSION)
    if not versions:
        return [_no_traffic(f"5xx ratio of {function}", window_s, bound_ratio, "%", [ratio.render(), traffic.render()])]
    results = []
    for v in sorted(versions):
        # A version with no 5xx is absent from the ratio's answer: its ratio is 0.
        value = measured.get(v, 0.0)
        faults = round(value * versions[v])
        results.append(ContractResult(
            f"5xx ratio of {function} model version {v}, {window_name(window_s)}", value, bound_ratio,
            "<=", "%", [ratio.render(), traffic.render()], note=f"{faults} of {versions[v]:.0f} requests"))
    return results


def version_traffic(backend, function, at, window_s, version, at_least=None, at_most=None) -> ContractResult:
    traffic = queries.requests(function, window_s, by=(queries.VERSION,))
    count = by_label(backend.instant(traffic, at), queries.VERSION).get(version, 0.0)
    if at_most is not None:
        return ContractResult(f"requests to {function} model version {version}, {window_name(window_s)}",
                              count, at_most, "<=", "requests", [traffic.render()])
    return ContractResult(f"requests to {function} model version {version}, {window_name(window_s)}",
                          count, at_least, ">=", "requests", [traffic.render()])


def function_traffic(backend, function, at, window_s, at_least) -> ContractResult:
    """Requests to the function, every version: a function nobody calls any more is either
    retired or cut off from its clients, and its other contracts have nothing to judge."""
    traffic = queries.requests(function, window_s)
    count = single_value(backend.instant(traffic, at)) or 0.0
    return ContractResult(f"requests to {function}, {window_name(window_s)}", count, at_least, ">=",
                          "requests", [traffic.render()])


def class_shares(backend, function, at, window_s, offset_s=0):
    query = queries.class_share(function, window_s, offset_s)
    return by_label(backend.instant(query, at), "top1_class"), query.render()


def dominant_class(backend, function, at, window_s, bound_share) -> ContractResult:
    shares, logql = class_shares(backend, function, at, window_s)
    if not shares:
        return ContractResult(f"largest class share of {function}, {window_name(window_s)}",
                              None, bound_share, "<=", "%", [logql])
    top = max(shares, key=shares.get)
    return ContractResult(f"largest class share of {function} ({top!r}), {window_name(window_s)}",
                          shares[top], bound_share, "<=", "%", [logql])


def class_bands(backend, function, at, window_s, bands: dict) -> list:
    """bands: {class: (at_least, at_most)}; a class never predicted has share 0."""
    shares, logql = class_shares(backend, function, at, window_s)
    if not shares:
        return [_no_traffic(f"class shares of {function}", window_s, 0.0, "%", [logql])]
    results = []
    for name, (low, high) in bands.items():
        share = shares.get(name, 0.0)
        label = f"share of class {name!r} in {function}'s predictions, {window_name(window_s)}"
        results.append(ContractResult(label + " (floor)", share, low, ">=", "%", [logql]))
        results.append(ContractResult(label + " (ceiling)", share, high, "<=", "%", [logql]))
    return results


def class_shift(backend, function, at, window_s, baseline_offset_s, bound_psi) -> ContractResult:
    current, logql_now = class_shares(backend, function, at, window_s)
    baseline, logql_then = class_shares(backend, function, at, window_s, offset_s=baseline_offset_s)
    name = (f"class mix shift (PSI) of {function}, {window_name(window_s)} vs the same length "
            f"{window_name(baseline_offset_s)[5:]} earlier")
    if not current or not baseline:
        side = "current" if not current else "baseline"
        result = ContractResult(name, None, bound_psi, "<=", "", [logql_now, logql_then])
        result.miss = f"no successful prediction in the {side} window"
        return result
    movers = ", ".join(f"{c!r} {fmt(b, '%')}->{fmt(n, '%')}" for c, b, n in biggest_movers(current, baseline))
    return ContractResult(name, psi(current, baseline), bound_psi, "<=", "",
                          [logql_now, logql_then], note=f"biggest moves: {movers}")


def value_bin_shares(backend, function, at, window_s, field, edges, offset_s=0):
    """({bin name: share of the window's successful predictions}, LogQL); {} when none."""
    queries_ = queries.value_bins(function, field, tuple(edges), window_s, offset_s)
    counts = [single_value(backend.instant(q, at)) or 0.0 for q in queries_]
    bounds = ["-inf", *(fmt(e, "") for e in edges), "inf"]
    names = [f"[{low}, {high})" for low, high in zip(bounds, bounds[1:])]
    total = sum(counts)
    shares = {name: count / total for name, count in zip(names, counts)} if total else {}
    return shares, [q.render() for q in queries_]


def value_shift(backend, function, at, window_s, baseline_offset_s, field, edges, bound_psi) -> ContractResult:
    """PSI of a numeric prediction field's distribution over fixed bins (`edges`), this
    window against the same window `baseline_offset_s` earlier: a regression's drift."""
    edges = sorted(float(e) for e in edges)
    current, logql_now = value_bin_shares(backend, function, at, window_s, field, edges)
    baseline, logql_then = value_bin_shares(backend, function, at, window_s, field, edges, baseline_offset_s)
    name = (f"{field} distribution shift (PSI over {len(edges) + 1} bins) of {function}, "
            f"{window_name(window_s)} vs the same length {window_name(baseline_offset_s)[5:]} earlier")
    logql = [logql_now[0], "...", logql_now[-1]]  # one query per bin and window: the ends say it
    if not current or not baseline:
        side = "current" if not current else "baseline"
        result = ContractResult(name, None, bound_psi, "<=", "", logql)
        result.miss = f"no successful prediction with a numeric {field} in the {side} window"
        return result
    movers = ", ".join(f"{b} {fmt(q, '%')}->{fmt(p, '%')}" for b, q, p in biggest_movers(current, baseline))
    return ContractResult(name, psi(current, baseline), bound_psi, "<=", "", logql,
                          note=f"biggest moves: {movers}")


def _no_traffic(what, window_s, bound, unit, logql) -> ContractResult:
    """Judging nothing is not passing: an empty window fails and says where to look."""
    result = ContractResult(f"{what}, {window_name(window_s)}", None, bound, "<=", unit, logql)
    result.miss = ("no inference request in the window: nothing to judge "
                   "(check SLO_AT, LOG_FILE or LOKI_URL, and the function name)")
    return result
