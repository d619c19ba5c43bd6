"""Which contract query builder produced each LogQL in the fixtures' answers.json."""

from logslo import queries as q
from logslo.logql import LabelFilter, RangeAggregation, Sum

F = "classifier"
V = ("model_version",)

INSTANT = {
    "requests_1h": q.requests(F, 3600),
    "p50_latency_1h": q.latency_quantile(F, 0.5, 3600),
    "p99_latency_1h": q.latency_quantile(F, 0.99, 3600),
    "p95_latency_by_version_1h": q.latency_quantile(F, 0.95, 3600, by=V),
    "p99_latency_by_version_1h": q.latency_quantile(F, 0.99, 3600, by=V),
    "error_ratio_5xx_1h": q.status_ratio(F, 3600, 500),
    "error_ratio_5xx_by_version_1h": q.status_ratio(F, 3600, 500, by=V),
    "class_share_1h": q.class_share(F, 3600),
    "requests_by_version_24h": q.requests(F, 86400, by=V),
    # `rate` and `avg_over_time`, which no contract asks: the file backend evaluates them as Loki does
    "rps_5m": Sum(RangeAggregation("rate", q.inference_logs(F), 300)),
    "mean_top1_prob_by_version_1h": RangeAggregation(
        "avg_over_time", q.inference_logs(F, LabelFilter("status", "=", 200), unwrap="top1_prob", keep=V), 3600, by=V),
    "requests_by_status_1h": q.requests(F, 3600, by=("status",)),
}

RANGE = {
    "p99_latency_5m_step_300s": q.latency_quantile(F, 0.99, 300),
}
