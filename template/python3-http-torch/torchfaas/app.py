"""The HTTP layer: Flask routes, JSON errors, and one log line per request.

Routes: POST / (inference), GET / (model metadata), GET /ready, GET /metrics.
Every response is JSON (errors included) and carries X-Request-Id. Every request
except the probe and scrape endpoints gets exactly one log line, written after
its response is built, whatever happened.
"""
import json
import time
import traceback

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from .batching import QueueFull
from .errors import STATUS_CODES, ApiError, BadRequest
from .logs import level_for_status
from .model_handler import InferenceRequest
from .record import RequestRecord
from .request_body import request_body
from .request_id import request_id_from, sanitise

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
# Probes and scrapes arrive every few seconds from machines, not users.
QUIET_PATHS = {"/ready", "/metrics"}


def json_response(payload: dict, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(payload, separators=(",", ":")), status=status,
                    headers=headers, mimetype="application/json")


def create_app(runtime, events, metrics) -> Flask:
    """The WSGI app; `runtime.model` names the model in answers, as in log lines.

    Each request to the function gets a `RequestRecord` (on `g.record`) when it
    arrives; the route, the runtime and the error handlers fill it in, and
    `close_record` writes its one log line and its metrics from it."""
    settings = runtime.settings
    app = Flask("torchfaas")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.register_error_handler(Exception, error_responder(settings))

    @app.before_request
    def open_record():
        g.record = RequestRecord(request_id_from(request.headers, settings.request_id_max_len),
                                 time.perf_counter())
        g.counted = not (request.path in QUIET_PATHS and request.method == "GET")
        if g.counted:
            runtime.enter()
            g.record.tenant = metrics.tenants.from_headers(request.headers)

    @app.teardown_request
    def leave(_exc):
        if g.get("counted"):
            runtime.leave()

    @app.after_request
    def close_record(response: Response):
        record = g.record
        response.headers["X-Request-Id"] = record.request_id
        if g.counted:
            finish(record, response.status_code, settings.latency_objective_s)
            events.emit(record.event, record.message, level_for_status(record.status), **record.log_fields())
            metrics.observe_request(record)
        return response

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
        record = g.record
        if runtime.handler.route(request.method, path) == "metadata":
            record.event = record.message = "metadata"
            return json_response({**model_metadata(runtime), "request_id": record.request_id})
        body = runtime.infer(inference_request(record.request_id), record,
                             client_gone=request.environ.get("waitress.client_disconnected"))
        if isinstance(body, Response):  # a plain handle()'s answer, sent as it is
            return body
        identity = runtime.model.identity
        return json_response({**body, "model_name": identity.model_name,
                              "model_version": identity.model_version, "request_id": record.request_id})

    return app


def inference_request(request_id: str) -> InferenceRequest:
    """Flask's current request as the handler sees it."""
    try:
        query = request.args
    except UnicodeDecodeError:  # raw non-UTF-8 bytes in the request line (found by fuzzing)
        raise BadRequest("query string is not valid UTF-8", code="invalid_query") from None
    return InferenceRequest(body=request_body(request), content_type=request.content_type or "",
                            headers=request.headers, query=query, request_id=request_id,
                            method=request.method, path=request.path)


def finish(record: RequestRecord, status: int, latency_objective_s: float):
    """What is known once the answer is built: status, latency, the request's shape."""
    record.latency_s = time.perf_counter() - record.started
    record.slow = record.latency_s > latency_objective_s
    record.status = status
    record.method = request.method
    record.path = sanitise(request.path, 128) or "/"
    record.input_bytes = request.content_length or 0
    client_gone = request.environ.get("waitress.client_disconnected")
    if client_gone and client_gone():
        record.client_gone = True


def error_responder(settings):
    """The app's one error handler: every failure as a JSON error with its status."""

    def answer(exc: Exception) -> Response:
        headers = None
        if isinstance(exc, ApiError):
            status, code, message, headers = exc.status, exc.code, exc.message, exc.headers
        elif isinstance(exc, QueueFull):
            status, code, message = 429, "queue_full", "too many requests queued; retry later"
            headers = {"Retry-After": str(settings.retry_after_s)}
        elif isinstance(exc, HTTPException):
            status, code = exc.code, STATUS_CODES.get(exc.code, "http_error")
            message = exc.description or code
            if status == 413:
                message = f"request body is larger than {settings.max_body_bytes} bytes"
        else:
            # the trace goes to the log line, never to the client
            g.record.trace = traceback.format_exc(limit=30)
            status, code, message = 500, "internal_error", "internal server error"
        g.record.error, g.record.message = code, message
        return json_response({"error": {"code": code, "message": message},
                              "request_id": g.record.request_id}, status, headers)

    return answer


def model_metadata(runtime) -> dict:
    return {**runtime.model.identity.fields(), "source_commit": runtime.settings.source_commit or None,
            "ready": runtime.ready,
            "batch_size": runtime.settings.batch_size, **runtime.handler.metadata()}
