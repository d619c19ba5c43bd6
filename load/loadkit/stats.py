"""The one percentile of the load tools, computed as Prometheus and Loki compute it.

`percentile(values, phi)` is Prometheus's `quantile` and LogQL's `quantile_over_time`:
rank phi*(n-1) in the sorted values, linear interpolation between the two closest
ranks (numpy's default `linear` method too). The log summary (`logsummary.py`), the
capacity finder and the benchmark all use it, so the p99 they print is the p99 the SLO
contracts compute from the same requests in Loki or in a log file. The SLO tool keeps
its own copy on purpose: it must run without this repository's load tools.
"""
from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(values: Iterable[float], phi: float, empty: float = math.nan) -> float:
    """The phi-quantile (0 <= phi <= 1) of `values`; `empty` when there are none (Loki: no sample)."""
    if not 0 <= phi <= 1:
        raise ValueError(f"phi is a fraction between 0 and 1, not {phi!r} (p99 is 0.99)")
    ordered = sorted(values)
    if not ordered:
        return empty
    n = len(ordered)
    # the same operations, in the same order, as Prometheus's quantile (Loki's range_vector.go)
    rank = phi * (n - 1)
    lower = max(0.0, math.floor(rank))
    upper = min(n - 1.0, lower + 1)
    weight = rank - math.floor(rank)
    return ordered[int(lower)] * (1 - weight) + ordered[int(upper)] * weight
