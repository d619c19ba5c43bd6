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
