"""One request, as its log line and its metrics see it.

The app makes a request's `RequestRecord` once its answer is built (`app.finish`),
from the answer, the runtime's `Outcome` (batch timings, the handler's
`log_fields()` in `handler_fields`) and the error it was answered with; it writes
the line from `log_fields()` and hands the same record to the metrics, which read
its attributes. A log field is an attribute's name: renaming one renames the
field, and any reader of the old name fails.
"""
from dataclasses import dataclass


@dataclass(slots=True, eq=False)
class RequestRecord:
    request_id: str
    started: float  # time.perf_counter() at receipt; not logged
    event: str = "inference"  # or "metadata" (GET /)
    message: str = "inference"
    status: int = 0
    latency_s: float = 0.0  # logged as latency_ms
    # later than the function's latency objective (LATENCY_OBJECTIVE_MS): logged as
    # `slow: true` (only then), counted in torchfaas_slow_requests_total; the Loki and
    # Prometheus latency alerts read this, so each function is judged on its own bound
    slow: bool = False
    method: str = ""
    path: str = ""
    input_bytes: int = 0
    tenant: str | None = None  # the sanitised tenant header (metrics map it to a bounded label)
    # the batch the request was served in (batched handlers, 200s)
    batch_size: int | None = None
    queue_ms: float | None = None
    inference_ms: float | None = None
    preprocess_ms: float | None = None  # preprocessing in the batch worker
    batch_retried: bool = False
    error: str | None = None  # the response body's error code
    trace: str | None = None  # 500s: where the fault was
    client_gone: bool = False
    # what the handler's log_fields() returned (top1_class, top1_prob, ...); None: nothing
    handler_fields: dict | None = None

    def log_fields(self) -> dict:
        """The request's fields of its log line (EventLog adds the model and the rest)."""
        fields = {"request_id": self.request_id, "status": self.status,
                  "latency_ms": round(self.latency_s * 1000, 3), "method": self.method,
                  "path": self.path, "input_bytes": self.input_bytes, "tenant": self.tenant}
        if self.batch_size is not None:
            fields["batch_size"] = self.batch_size
            fields["queue_ms"] = round(self.queue_ms, 2)
            fields["inference_ms"] = round(self.inference_ms, 2)
        if self.handler_fields:
            fields.update(self.handler_fields)
        if self.preprocess_ms is not None:
            fields["preprocess_ms"] = round(self.preprocess_ms, 2)
        if self.batch_retried:
            fields["batch_retried"] = True
        fields["error"] = self.error
        fields["trace"] = self.trace
        if self.client_gone:
            fields["client_gone"] = True
        if self.slow:
            fields["slow"] = True
        return fields  # None values are left out of the line
