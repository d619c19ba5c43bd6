"""Figures over time for the HTML reports: per-version latency percentiles as range
queries over the part of the window that has requests (both backends, same LogQL).

First a coarse count per step finds where the requests are; then the percentiles are
asked at about 40 steps over that span, so a 30-second demo and a day of production
both give a readable line.
"""

from __future__ import annotations

from . import queries
from .vectors import labels_of

COARSE_STEPS = 60
FINE_STEPS = 40


def _by_version(matrix: dict) -> dict:
    return {labels_of(key).get(queries.VERSION, ""): points for key, points in matrix.items()}


def latency_timeline(backend, function: str, at: float, window_s: int, phis=(0.5, 0.99)) -> dict:
    """{"p50_ms": {version: [(t, v), ...]}, "p99_ms": {...}, "step_s": s, "logql": [...]}"""
    v = (queries.VERSION,)
    coarse = max(1, int(window_s) // COARSE_STEPS)
    counts = queries.requests(function, coarse, by=v)
    seen = [t for points in backend.range(counts, at - window_s + coarse, at, coarse).values()
            for t, value in points if value > 0 and t <= at]
    out = {"step_s": None, "logql": [counts.render()]}
    for phi in phis:
        out[f"p{phi * 100:g}_ms"] = {}
    if not seen:
        return out
    first, last = min(seen) - coarse, max(seen)
    step = max(1, int((last - first) // FINE_STEPS) or 1)
    out["step_s"] = step
    for phi in phis:
        query = queries.latency_quantile(function, phi, step, by=v)
        out["logql"].append(query.render())
        matrix = backend.range(query, first + step, last, step)
        out[f"p{phi * 100:g}_ms"] = {version: [(t, value) for t, value in points if t <= at]
                                     for version, points in sorted(_by_version(matrix).items())}
    return out


def version_figures(backend, function: str, at: float, window_s: int) -> dict:
    """{version: {"requests", "ratio_5xx", "class_shares"}} over the window, for the charts."""
    from .vectors import by_label
    v = (queries.VERSION,)
    counts = by_label(backend.instant(queries.requests(function, window_s, by=v), at), queries.VERSION)
    ratio = by_label(backend.instant(queries.status_ratio(function, window_s, 500, by=v), at), queries.VERSION)
    out = {}
    for version in sorted(counts):
        shares = by_label(backend.instant(queries.class_share(function, window_s, version=version), at), "top1_class")
        out[version] = {"requests": counts[version], "ratio_5xx": ratio.get(version, 0.0),
                        "class_shares": dict(sorted(shares.items(), key=lambda kv: (-kv[1], kv[0])))}
    return out


def slo_charts(backend, function: str, at: float, window_s: int, results: list) -> dict:
    """What slo_page draws beside the verdict table: the bounds come from the contracts run."""
    chart = latency_timeline(backend, function, at, window_s, phis=(0.99,))
    chart["figures"] = version_figures(backend, function, at, window_s)
    for r in results:
        if r.unit == "ms" and r.contract.startswith("p99 latency"):
            chart["slo_p99_ms"] = r.bound
        elif r.contract.startswith("5xx ratio"):
            chart["slo_5xx_ratio"] = r.bound
        elif "(PSI)" in r.contract:
            chart["psi"], chart["psi_bound"] = r.measured, r.bound
    return chart
