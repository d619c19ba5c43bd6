"""Aggregations over a window's samples, written exactly as Loki computes them.

The operation order matters for reproducing Loki's numbers to the last bit, so these
follow Loki's Go code (pkg/logql/range_vector.go) line by line.
"""

from __future__ import annotations

import math


def quantile(phi: float, values: list) -> float:
    """Prometheus `quantile`: linear interpolation between closest ranks, rank = phi*(n-1)."""
    if not values:
        return math.nan
    if phi < 0:
        return -math.inf
    if phi > 1:
        return math.inf
    ordered = sorted(values)
    n = len(ordered)
    rank = phi * (n - 1)
    lower = max(0.0, math.floor(rank))
    upper = min(n - 1.0, lower + 1)
    weight = rank - math.floor(rank)
    return ordered[int(lower)] * (1 - weight) + ordered[int(upper)] * weight


def average(values: list) -> float:
    """avg_over_time: Loki's incremental mean, mean += x/n - mean/n (not sum/n).

    The two differ in the last digits; the incremental form is the one whose numbers
    match a real Loki's answers bit for bit.
    """
    mean = 0.0
    count = 0.0
    for value in values:
        count += 1
        mean += value / count - mean / count
    return mean


def safe_divide(numerator: float, denominator: float) -> float:
    """IEEE division like Go: x/0 is +-Inf, 0/0 is NaN (Python would raise)."""
    if denominator == 0:
        if numerator == 0 or math.isnan(numerator):
            return math.nan
        return math.copysign(math.inf, numerator)
    return numerator / denominator
