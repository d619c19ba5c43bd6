"""Prometheus metrics for GET /metrics (prometheus-client, own registry).

Every series carries function, model_name and model_version; no label takes a
client-controlled or unbounded value.
"""
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2.5, 5, 10)


class Metrics:
    def __init__(self, function_name: str):
        self.registry = CollectorRegistry()
        self.function_name = function_name
        self.model = ("unknown", "unknown")
        labels = ["function", "model_name", "model_version"]
        self.requests = Counter("torchfaas_requests_total", "Requests by HTTP status.",
                                labels + ["status"], registry=self.registry)
        self.latency = Histogram("torchfaas_request_latency_seconds",
                                 "Receipt to response, in the runtime.", labels,
                                 buckets=LATENCY_BUCKETS, registry=self.registry)

    def set_model(self, model_name: str, model_version: str):
        self.model = (model_name, model_version)

    def observe_request(self, status: int, latency_s: float, fields: dict):
        base = (self.function_name, *self.model)
        self.requests.labels(*base, str(status)).inc()
        self.latency.labels(*base).observe(latency_s)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
