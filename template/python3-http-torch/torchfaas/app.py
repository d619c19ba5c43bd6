"""The HTTP layer: Flask routes, JSON errors, and one log line per request.

Routes: POST / (inference), GET / (model metadata), GET /ready, GET /metrics.
Every response is JSON (errors included) and carries X-Request-Id. Every request
except the probe and scrape endpoints gets exactly one log line, written after
its response is built, whatever happened.
"""
import json
import time
import traceback
from typing import NamedTuple

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from .errors import STATUS_CODES, ApiError, BadRequest
from .logs import level_for_status
from .metrics import TenantLabels
from .model_handler import InferenceRequest
from .record import RequestRecord
from .request_body import request_body
from .request_id import request_id_from, sanitise
from .runtime import Outcome
from .waitress_channel import client_gone_check

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
# Probes and scrapes arrive every few seconds from machines, not users.
QUIET_PATHS = {"/ready", "/metrics"}
# the outcome of a request that never reached the model (routing, 404, not ready...)
NOT_RUN = Outcome()


class Failure(NamedTuple):
    """What a request was answered with when it failed: its line's `error` and message,
    and for a server fault where it happened."""
    code: str
    message: str
    trace: str | None = None


def json_response(payload: dict, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(payload, separators=(",", ":")), status=status,
                    headers=headers, mimetype="application/json")


def create_app(runtime, events, metrics, settings) -> Flask:
    """The WSGI app around `runtime`; `settings` are the handler's (Settings.for_handler).

    What is learnt about a request waits on `g`: its id, receipt time and client
    check (open_request), what it asked for and the runtime's `Outcome` (invoke),
    the `Failure` it was answered with (the error handler). Once the answer is
    built, `finish` makes its one `RequestRecord` from that, and `close_request`
    writes the log line and feeds the metrics from the record."""
    app = Flask("torchfaas")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.register_error_handler(Exception, error_responder(settings.max_body_bytes))
    add_request_lifecycle(app, runtime, events, metrics, settings)
    add_routes(app, runtime, metrics)
    return app


def add_request_lifecycle(app: Flask, runtime, events, metrics, settings) -> None:
    """Open every request (its id, clock and client check, counted in flight unless a
    probe or scrape) and close it (X-Request-Id, its log line and metrics)."""

    @app.before_request
    def open_request():
        g.request_id = request_id_from(request.headers, settings.request_id_max_len)
        g.started = time.perf_counter()
        g.client_gone = client_gone_check(request.environ)
        g.counted = not (request.path in QUIET_PATHS and request.method == "GET")
        if g.counted:
            runtime.enter()

    @app.teardown_request
    def leave(_exc):
        if g.get("counted"):
            runtime.leave()

    @app.after_request
    def close_request(response: Response):
        response.headers["X-Request-Id"] = g.request_id
        if g.counted:
            record = finish(response.status_code, settings.latency_objective_s, metrics.tenants)
            events.emit(record.event, record.message, level_for_status(record.status), **record.log_fields())
            metrics.observe_request(record)
        return response


def add_routes(app: Flask, runtime, metrics) -> None:
    """GET /ready, GET /metrics, and every other path and method to the runtime."""

    @app.get("/ready")
    def ready():
        if runtime.ready:
            return json_response({"status": "ready"})
        return json_response({"status": runtime.state}, 503)

    @app.get("/metrics")
    def metrics_endpoint():
        body, content_type = metrics.render()
        return Response(body, mimetype=None, content_type=content_type)

    @app.route("/", defaults={"path": ""}, methods=ALL_METHODS)
    @app.route("/<path:path>", methods=ALL_METHODS)
    def invoke(path: str):
        if runtime.route(request.method, path) == "metadata":
            g.event = "metadata"
            return json_response({**runtime.metadata(), "request_id": g.request_id})
        outcome = g.outcome = runtime.infer(inference_request(g.request_id), g.client_gone)
        if outcome.error is not None:
            raise outcome.error  # answered by the error handler, as any failure
        if isinstance(outcome.body, Response):  # a plain handle()'s answer, sent as it is
            return outcome.body
        identity = runtime.identity
        return json_response({**outcome.body, "model_name": identity.model_name,
                              "model_version": identity.model_version, "request_id": g.request_id})


def inference_request(request_id: str) -> InferenceRequest:
    """Flask's current request as the handler sees it."""
    try:
        query = request.args
    except UnicodeDecodeError:  # raw non-UTF-8 bytes in the request line (found by fuzzing)
        raise BadRequest("query string is not valid UTF-8", code="invalid_query") from None
    return InferenceRequest(body=request_body(request), content_type=request.content_type or "",
                            headers=request.headers, query=query, request_id=request_id,
                            method=request.method, path=request.path)


def finish(status: int, latency_objective_s: float, tenants: TenantLabels) -> RequestRecord:
    """The request's record, once its answer is built: its status, latency and shape,
    and what open_request, invoke and the error handler left on `g`."""
    latency_s = time.perf_counter() - g.started
    event = g.get("event", "inference")
    outcome = g.get("outcome", NOT_RUN)
    failure = g.get("failure")
    batch = outcome.batch
    batch_fields = {} if batch is None else {
        "batch_size": batch.batch_size, "queue_ms": batch.queue_ms, "inference_ms": batch.inference_ms,
        "preprocess_ms": batch.prepare_ms}
    return RequestRecord(
        g.request_id, g.started, event=event, message=failure.message if failure else event,
        status=status, latency_s=latency_s, slow=latency_s > latency_objective_s,
        method=request.method, path=sanitise(request.path, 128) or "/",
        input_bytes=request.content_length or 0, tenant=tenants.from_headers(request.headers),
        **batch_fields, batch_retried=outcome.retried, handler_fields=outcome.handler_fields,
        error=failure.code if failure else None, trace=failure.trace if failure else None,
        client_gone=g.client_gone is not None and bool(g.client_gone()))


def error_responder(max_body_bytes: int):
    """The app's one error handler: every failure as a JSON error with its status."""

    def answer(exc: Exception) -> Response:
        headers, trace = None, None
        if isinstance(exc, ApiError):
            status, code, message, headers = exc.status, exc.code, exc.message, exc.headers
        elif isinstance(exc, HTTPException):
            status, code = exc.code, STATUS_CODES.get(exc.code, "http_error")
            message = exc.description or code
            if status == 413:
                message = f"request body is larger than {max_body_bytes} bytes"
        else:
            # the trace goes to the log line, never to the client
            trace = traceback.format_exc(limit=30)
            status, code, message = 500, "internal_error", "internal server error"
        g.failure = Failure(code, message, trace)
        return json_response({"error": {"code": code, "message": message},
                              "request_id": g.request_id}, status, headers)

    return answer
