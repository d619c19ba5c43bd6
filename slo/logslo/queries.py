"""The LogQL each SLO contract runs, built once and used by both backends and the rules.

All of them read only `event="inference"` lines (one per request) of one function,
selected by the low-cardinality `app` stream label.
"""

from __future__ import annotations

from .logql import Divide, LabelFilter, LogQuery, RangeAggregation, Sum

VERSION = "model_version"


def inference_logs(function: str, *filters: LabelFilter, unwrap: str | None = None) -> LogQuery:
    return LogQuery(
        stream=(("app", function),),
        filters=(LabelFilter("event", "=", "inference"), *filters),
        unwrap=unwrap,
    )


def requests(function: str, window_s: int, by: tuple | None = None, offset_s: int = 0) -> Sum:
    """How many requests (sum, or sum by labels) in the window."""
    return Sum(RangeAggregation("count_over_time", inference_logs(function), window_s, offset_s=offset_s), by)


def request_rate(function: str, window_s: int) -> Sum:
    return Sum(RangeAggregation("rate", inference_logs(function), window_s))


def latency_quantile(function: str, phi: float, window_s: int, by: tuple = ()) -> RangeAggregation:
    """phi-quantile of latency_ms over every request in the window (`by ()` pools them)."""
    return RangeAggregation(
        "quantile_over_time", inference_logs(function, unwrap="latency_ms"), window_s, phi=phi, by=by
    )


def error_ratio_5xx(function: str, window_s: int, by: tuple | None = None) -> Divide:
    """Share of requests answered 5xx. A group with no 5xx is absent from the answer (0)."""
    faults = RangeAggregation("count_over_time", inference_logs(function, LabelFilter("status", ">=", 500)), window_s)
    everything = RangeAggregation("count_over_time", inference_logs(function), window_s)
    return Divide(Sum(faults, by), Sum(everything, by))


def class_share(function: str, window_s: int, offset_s: int = 0) -> Divide:
    """Share of successful predictions whose top-1 class is each class."""
    ok = inference_logs(function, LabelFilter("status", "=", 200))
    per_class = Sum(RangeAggregation("count_over_time", ok, window_s, offset_s=offset_s), ("top1_class",))
    total = Sum(RangeAggregation("count_over_time", ok, window_s, offset_s=offset_s))
    return Divide(per_class, total, on_nothing_group_left=True)


def mean_top1_prob(function: str, window_s: int, by: tuple = (VERSION,)) -> RangeAggregation:
    ok = inference_logs(function, LabelFilter("status", "=", 200), unwrap="top1_prob")
    return RangeAggregation("avg_over_time", ok, window_s, by=by)
