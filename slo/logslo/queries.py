"""The LogQL each SLO contract runs, built once and used by both backends and the rules.

All of them read only `event="inference"` lines (one per request) of one function,
selected by the low-cardinality `app` stream label, and extract only the JSON fields
they use (`| json event, status, model_version`), never every field of every line
(request ids, traces): Loki then parses three or four fields per line, not twenty.
"""

from __future__ import annotations

from .logql import BinLabel, Divide, LabelFilter, LogQuery, RangeAggregation, Sum

VERSION = "model_version"


def inference_logs(function: str, *filters: LabelFilter, unwrap: str | None = None, keep: tuple = (),
                   label_format: BinLabel | None = None) -> LogQuery:
    """The function's request lines; `| json` extracts the fields the filters, the unwrap,
    the bin label and `keep` (the labels a `by` groups on) name, in that order, and nothing else."""
    filters = (LabelFilter("event", "=", "inference"), *filters)
    fields = []
    binned = [label_format.field] if label_format else []
    for name in [f.name for f in filters] + ([unwrap] if unwrap else []) + binned + list(keep or ()):
        if name not in fields:
            fields.append(name)
    return LogQuery(stream=(("app", function),), filters=filters, unwrap=unwrap, fields=tuple(fields),
                    label_format=label_format)


def version_requests(function: str, version: str) -> LogQuery:
    """Every request line of one model version (a log query: Loki answers the lines, the
    comparison reads each request's latency, status and class from them)."""
    return inference_logs(function, LabelFilter(VERSION, "=", version))


def requests(function: str, window_s: int, by: tuple | None = None, offset_s: int = 0) -> Sum:
    """How many requests (sum, or sum by labels) in the window."""
    logs = inference_logs(function, keep=by)
    return Sum(RangeAggregation("count_over_time", logs, window_s, offset_s=offset_s), by)


def latency_quantile(function: str, phi: float, window_s: int, by: tuple = ()) -> RangeAggregation:
    """phi-quantile of latency_ms over every request in the window (`by ()` pools them)."""
    return RangeAggregation(
        "quantile_over_time", inference_logs(function, unwrap="latency_ms", keep=by), window_s, phi=phi, by=by
    )


def status_ratio(function: str, window_s: int, low: int, high: int | None = None, by: tuple | None = None) -> Divide:
    """Share of requests answered with a status in [low, high) (high None: no upper end;
    `low` 500: the 5xx ratio). A group with none in the range is absent from the answer (0)."""
    filters = [LabelFilter("status", ">=", low)] + ([LabelFilter("status", "<", high)] if high else [])
    some = RangeAggregation("count_over_time", inference_logs(function, *filters, keep=by), window_s)
    everything = RangeAggregation("count_over_time", inference_logs(function, keep=by), window_s)
    return Divide(Sum(some, by), Sum(everything, by))


def class_share(function: str, window_s: int, offset_s: int = 0, version: str | None = None) -> Divide:
    """Share of successful predictions whose top-1 class is each class (of one model
    version when `version` is given)."""
    ok = [LabelFilter("status", "=", 200)] + ([LabelFilter(VERSION, "=", version)] if version is not None else [])
    per_class = Sum(RangeAggregation("count_over_time", inference_logs(function, *ok, keep=("top1_class",)),
                                     window_s, offset_s=offset_s), ("top1_class",))
    total = Sum(RangeAggregation("count_over_time", inference_logs(function, *ok), window_s, offset_s=offset_s))
    return Divide(per_class, total, on_nothing_group_left=True)


def value_bins(function: str, field: str, edges: tuple, window_s: int, offset_s: int = 0) -> list:
    """How many successful predictions fell in each bin of a numeric field (e.g. a
    regression's `prediction_mean`), one query per bin: (-inf, e0), [e0, e1), ..., [en, inf).
    A line without the field (or with a non-number) is in no bin."""
    bounds = [None, *edges, None]
    out = []
    for low, high in zip(bounds, bounds[1:]):
        filters = [LabelFilter("status", "=", 200)]
        filters += [LabelFilter(field, ">=", low)] if low is not None else []
        filters += [LabelFilter(field, "<", high)] if high is not None else []
        logs = inference_logs(function, *filters)
        out.append(Sum(RangeAggregation("count_over_time", logs, window_s, offset_s=offset_s)))
    return out


def deployments(function: str, window_s: int) -> Sum:
    """The function's `model_loaded` lines in the window by model version and the commit its
    image was built from (`source_commit`): which commit each served version came from."""
    by = (VERSION, "source_commit")
    logs = LogQuery(stream=(("app", function),), filters=(LabelFilter("event", "=", "model_loaded"),),
                    fields=("event",) + by)
    return Sum(RangeAggregation("count_over_time", logs, window_s), by)


# -- aggregates: small answers counted by Loki (logslo.aggregates reads them) -------------

OK = LabelFilter("status", "=", "200")  # a string match: the JSON number 200 is the label "200"


def binned_requests(function: str, window_s: int, field: str, width: float, low: float | None = None,
                    high: float | None = None, answered: bool = False, offset_s: int = 0) -> Sum:
    """Requests per bin of `width` of a numeric field, by model version: `sum by
    (model_version, bin)` over `label_format bin=`{{ floor (divf .f W) }}`` (bin k holds
    [k * width, (k + 1) * width)); only values in [low, high) when given (a band), only
    200 answers when `answered`."""
    filters = ([OK] if answered else []) + ([LabelFilter(field, ">=", low)] if low is not None else []) + \
        ([LabelFilter(field, "<", high)] if high is not None else [])
    logs = inference_logs(function, *filters, keep=(VERSION,), label_format=BinLabel(field, width))
    return Sum(RangeAggregation("count_over_time", logs, window_s, offset_s=offset_s), (VERSION, "bin"))


def requests_where(function: str, window_s: int, *filters: LabelFilter, offset_s: int = 0) -> Sum:
    """Requests meeting the filters (e.g. `latency_ms > 50`), by model version."""
    logs = inference_logs(function, *filters, keep=(VERSION,))
    return Sum(RangeAggregation("count_over_time", logs, window_s, offset_s=offset_s), (VERSION,))


def class_counts(function: str, window_s: int, offset_s: int = 0) -> Sum:
    """200 answers by model version and top-1 class."""
    logs = inference_logs(function, OK, keep=(VERSION, "top1_class"))
    return Sum(RangeAggregation("count_over_time", logs, window_s, offset_s=offset_s), (VERSION, "top1_class"))
