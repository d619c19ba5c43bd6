"""Prometheus metrics for GET /metrics (prometheus-client, own registry).

Every series carries `function`, `model_name` and `model_version`, read from the
same `CurrentModel` the log lines read, so a metric and a log line of one
request always name the same model. No label takes an unbounded value: `status` is an
HTTP status code, `event` is `inference` or `metadata` (as in the log line),
and `tenant` comes from an allow-list (see `TenantLabels`). Request ids and
predicted classes never become labels.

Series (all prefixed `torchfaas_`):

  requests_total{status, event, tenant}           counter
  request_latency_seconds{event, tenant}           histogram, receipt to response
  slow_requests_total{event}                       counter, answered later than the function's
                                                   latency objective (LATENCY_OBJECTIVE_MS)
  latency_objective_seconds                        gauge, that objective
  prediction_metric_info{metric, kind, field}      gauge = 1 per declared prediction series
                                                   (its name, histogram|counter, its log
                                                   field): dashboards find them here
  queue_seconds                                    histogram, wait for a batch slot
  inference_seconds                                histogram, the batch's forward pass
  batch_size                                       histogram, batch each request was served in
  <declared>                                       what the handler's `prediction_metrics`
                                                   declare (torchfaas.predictions): e.g.
                                                   top1_probability for a classifier, a
                                                   predicted-value histogram for a regression
  client_gone_total{skipped}                       counter, requests whose client hung up;
                                                   skipped="true": never computed (499)
  batch_failures_total                             counter, predict() raised for a batch
  batch_retries_total                              counter, smaller batches re-run after a
                                                   failure (poison isolation)
  inflight_requests                                gauge, requests being served now
  queue_depth                                      gauge, items waiting for the batcher
  ready                                            gauge, 1 when /ready says 200
  model_load_seconds / model_warmup_seconds /
  cold_start_seconds                               gauges, from the last model load
  model_info{artifact_hash}                        gauge = 1
"""
from collections.abc import Iterable
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .batching import BatchStats
from .identity import CurrentModel, ModelIdentity
from .predictions import LabelCounter, ValueHistogram
from .record import RequestRecord
from .request_id import sanitise

# Log-scale, 2**(1/8) apart (each bucket ~9% above the one below) from 1 ms to 1 s, through
# 250 ms, then coarse to 10 s. The comparison contracts judge the candidate's latency
# against a bound of +10%: a request that is 10% slower lands about one bucket higher
# wherever it is served (the classifier's 20-40 ms, a small model's 1-5 ms), so the shift
# reads off the histogram (buckets 5-10 ms wide would be 15-50% of 20-40 ms: a 10% shift
# would move a request a bucket only now and then). 85 buckets: per (model version, event,
# tenant) label set, 85 series, a few hundred per pod.
LATENCY_RATIO = 2 ** (1 / 8)
LATENCY_BUCKETS = tuple(float(f"{0.25 * LATENCY_RATIO ** k:.4g}") for k in range(-64, 17)) + (1.5, 2.5, 5.0, 10.0)
QUEUE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
INFERENCE_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)

# no `*_created` series: Prometheus would store each as one more gauge per series
disable_created_metrics()


def latency_buckets(objective_s: float) -> tuple:
    """LATENCY_BUCKETS with the latency objective as a boundary, so the histogram's
    share within the objective is exact, as the slow-request counter is."""
    return tuple(sorted({*LATENCY_BUCKETS, objective_s}))


BASE_LABELS = ("function", "model_name", "model_version")
TENANT_NONE, TENANT_OTHER = "none", "other"
ZERO_STATUSES = ("200", "500", "503", "504")
MAX_TENANTS = 50
TENANT_MAX_LEN = 64


class TenantLabels:
    """Maps the tenant header to a bounded label value.

    `TENANTS` (comma-separated) is the allow-list: a listed tenant is its own
    label value (compared case-insensitively, label in lower case), any other
    value is `other`, and a request without the header (or with an empty one)
    is `none` (so is one that is empty once sanitised). At most MAX_TENANTS entries are kept, so a long list cannot blow
    up the number of series. The log line carries the sanitised header value
    itself (field `tenant`), which may be any tenant.
    """

    def __init__(self, allow_list: str, header: str):
        names = [sanitise(t.strip(), TENANT_MAX_LEN).lower() for t in allow_list.split(",")]
        reserved = {TENANT_NONE, TENANT_OTHER, ""}
        self.allowed = tuple(dict.fromkeys(n for n in names if n not in reserved))[:MAX_TENANTS]
        self._allowed = frozenset(self.allowed)
        self.header = header

    def from_headers(self, headers) -> str | None:
        """The sanitised tenant for the log line; None when absent or empty once sanitised."""
        return sanitise((headers.get(self.header) or "").strip(), TENANT_MAX_LEN) or None

    def label(self, tenant: str | None) -> str:
        if not tenant:
            return TENANT_NONE
        tenant = tenant.lower()
        return tenant if tenant in self._allowed else TENANT_OTHER


class RuntimeGauges(Protocol):
    """What the scrape-time gauges read from the runtime (torchfaas.runtime.Runtime)."""

    # seconds of the last model load: "load", "warmup", "cold_start"; empty before one
    load_times: dict[str, float]

    @property
    def inflight(self) -> int: ...

    @property
    def ready(self) -> bool: ...

    def queue_depth(self) -> int: ...

    @property
    def batch_stats(self) -> BatchStats | None: ...


class Metrics:
    """The function's series. `runtime` (optional) supplies the gauges read at
    scrape time: in-flight requests, readiness, queue depth, batch failures and
    re-runs, and load times;
    `predictions` are the handler's declared prediction metrics (torchfaas.predictions);
    `latency_objective_s` the function's p99 bound (Settings.latency_objective_ms), whose
    slower requests the app marks `slow` on their record."""

    def __init__(self, model: CurrentModel, tenants: TenantLabels, runtime: RuntimeGauges | None = None,
                 predictions: Iterable[ValueHistogram | LabelCounter] = (), *, latency_objective_s: float):
        self.registry = CollectorRegistry()
        self.model = model
        self.latency_objective_s = latency_objective_s
        self.runtime = runtime
        self.tenants = tenants
        r = self.registry
        base = list(BASE_LABELS)
        self.requests = Counter(
            "torchfaas_requests_total", "Requests answered, by HTTP status, event and tenant.",
            base + ["status", "event", "tenant"], registry=r)
        self.latency = Histogram(
            "torchfaas_request_latency_seconds", "Receipt to response, in the runtime.",
            base + ["event", "tenant"], buckets=latency_buckets(latency_objective_s), registry=r)
        # counted here rather than read from a bucket, so the alert rules need not know
        # each function's objective (the same rules serve a 50 ms and a 250 ms function)
        self.slow = Counter(
            "torchfaas_slow_requests_total", "Requests answered later than the function's latency objective.",
            base + ["event"], registry=r)
        self.queue = Histogram(
            "torchfaas_queue_seconds", "Time a request waited for its batch to start.",
            base, buckets=QUEUE_BUCKETS, registry=r)
        self.inference = Histogram(
            "torchfaas_inference_seconds", "Forward pass of the batch that served the request.",
            base, buckets=INFERENCE_BUCKETS, registry=r)
        self.batch_size = Histogram(
            "torchfaas_batch_size", "Size of the batch each request was served in.",
            base, buckets=BATCH_BUCKETS, registry=r)
        # (declaration, its series): fed from the declared log field of 200 answers
        self.predictions = []
        for declared in predictions:
            name = f"torchfaas_{declared.name}"
            if isinstance(declared, ValueHistogram):
                series = Histogram(name, declared.help, base, buckets=declared.buckets, registry=r)
            elif isinstance(declared, LabelCounter):
                series = Counter(name, declared.help, base + [declared.label], registry=r)
            else:
                raise TypeError(f"not a prediction metric: {declared!r}")
            self.predictions.append((declared, series))
        self.client_gone = Counter(
            "torchfaas_client_gone_total", "Requests whose client hung up before the answer; "
            "skipped=true: taken out before their batch ran, never computed.",
            base + ["skipped"], registry=r)
        r.register(_StateCollector(self))
        # a loaded model's series exist at 0 before its first request (and with
        # MODEL_VERSION pinned, before the load: cold-start 503s count from the start)
        model.subscribe(self._zero_series)

    # -- model -------------------------------------------------------------
    def _base(self) -> tuple[str, str, str]:
        identity = self.model.identity
        return identity.function, identity.model_name, identity.model_version

    def _zero_series(self, identity: ModelIdentity):
        """Expose the everyday series at 0 before the first request of a model.

        rate() never counts a series' first sample, so a counter that first shows
        up at 3 hides those 3 requests. Success and the server errors the SLO
        counts (500, 503, 504), for every tenant label, and the per-request
        histograms start at 0 instead; other statuses appear on first use.
        Nothing is invented for a model not yet known ("unknown" version).
        """
        if identity.model_version == "unknown":
            return
        base = identity.function, identity.model_name, identity.model_version
        for tenant in (*self.tenants.allowed, TENANT_NONE, TENANT_OTHER):
            for status in ZERO_STATUSES:
                self.requests.labels(*base, status, "inference", tenant)
            self.latency.labels(*base, "inference", tenant)
        self.slow.labels(*base, "inference")
        for histogram in (self.queue, self.inference, self.batch_size):
            histogram.labels(*base)
        for declared, series in self.predictions:
            if isinstance(declared, ValueHistogram):
                series.labels(*base)
            else:
                for value in (*declared.values, "other"):
                    series.labels(*base, value)

    # -- requests ------------------------------------------------------------
    def observe_request(self, record: RequestRecord):
        """One answered request, from the record its log line was written from."""
        base = self._base()
        tenant = self.tenants.label(record.tenant)
        status = record.status
        self.requests.labels(*base, str(status), record.event, tenant).inc()
        self.latency.labels(*base, record.event, tenant).observe(record.latency_s)
        if record.slow:
            self.slow.labels(*base, record.event).inc()
        if record.batch_size is not None:
            self.queue.labels(*base).observe(record.queue_ms / 1000)
            self.inference.labels(*base).observe(record.inference_ms / 1000)
            self.batch_size.labels(*base).observe(record.batch_size)
        if status == 200 and self.predictions and record.handler_fields:
            self._observe_predictions(base, record.handler_fields)
        if record.client_gone:
            self.client_gone.labels(*base, "true" if record.error == "client_gone" else "false").inc()

    def _observe_predictions(self, base, handler_fields: dict):
        """The handler's declared series, each from the log field it names."""
        for declared, series in self.predictions:
            value = handler_fields.get(declared.field)
            if value is None:
                continue
            if isinstance(declared, LabelCounter):
                series.labels(*base, declared.label_of(value)).inc()
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                series.labels(*base).observe(value)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _StateCollector:
    """Gauges read at scrape time, always with the current model labels."""

    def __init__(self, metrics: Metrics):
        self.m = metrics

    def collect(self):
        m = self.m
        base = list(m._base())
        names = list(BASE_LABELS)

        def gauge(name, doc, value, extra_names=(), extra_values=()):
            family = GaugeMetricFamily(name, doc, labels=names + list(extra_names))
            family.add_metric(base + list(extra_values), value)
            return family

        runtime = m.runtime
        yield gauge("torchfaas_latency_objective_seconds", "The function's latency objective (LATENCY_OBJECTIVE_MS): "
                    "p99 at most this; slower requests count in torchfaas_slow_requests_total.",
                    m.latency_objective_s)
        declared = GaugeMetricFamily(
            "torchfaas_prediction_metric_info", "The prediction series the handler declares "
            "(metric, kind histogram|counter, the log field it is fed from).",
            labels=names + ["metric", "kind", "field"])
        for prediction, _ in m.predictions:
            declared.add_metric(base + [prediction.queried_as, prediction.kind, prediction.field], 1)
        yield declared
        yield gauge("torchfaas_inflight_requests", "Requests being served now (probes and scrapes excluded).",
                    runtime.inflight if runtime is not None else 0)
        if runtime is None:
            return
        yield gauge("torchfaas_ready", "1 when the function reports ready (model loaded, not draining).",
                    1 if runtime.ready else 0)
        yield gauge("torchfaas_queue_depth", "Items waiting for the batcher.", runtime.queue_depth())
        stats = runtime.batch_stats
        for name, doc, attr in (
                ("torchfaas_batch_failures", "Batches whose predict() raised (first runs and re-runs).",
                 "batch_failures"),
                ("torchfaas_batch_retries", "Smaller batches re-run after a batch failed, so only "
                 "the items that fail on their own get a 500.", "batch_retries")):
            family = CounterMetricFamily(name, doc, labels=names)
            family.add_metric(base, getattr(stats, attr) if stats is not None else 0)
            yield family
        load_times = runtime.load_times
        if load_times:
            for key, doc in (("load", "Seconds the last model load took (artifact check and deserialise)."),
                             ("warmup", "Seconds the warm-up after the last model load took."),
                             ("cold_start", "Seconds from process start to the model being ready.")):
                if key in load_times:
                    name = "torchfaas_cold_start_seconds" if key == "cold_start" else f"torchfaas_model_{key}_seconds"
                    yield gauge(name, doc, load_times[key])
            yield gauge("torchfaas_model_info", "The loaded model; artifact_hash names its build-time artifacts.",
                        1, ["artifact_hash"], [m.model.identity.artifact_hash or "none"])
