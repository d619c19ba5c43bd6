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
from .errors import STATUS_CODES, ApiError, BadRequest, MethodNotAllowed, NotFound
from .logs import level_for_status
from .model_handler import InferenceRequest
from .request_body import request_body
from .request_id import request_id_from, sanitise

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
# Probes and scrapes arrive every few seconds from machines, not users.
QUIET_PATHS = {"/ready", "/metrics"}


def json_response(payload: dict, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(payload, separators=(",", ":")), status=status,
                    headers=headers, mimetype="application/json")


def create_app(runtime, events, metrics) -> Flask:
    """The WSGI app; `runtime.model` names the model in answers, as in log lines."""
    settings = runtime.settings
    app = Flask("torchfaas")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes

    def error_response(status: int, code: str, message: str, headers: dict | None = None):
        g.fields["error"] = code
        g.message = message
        return json_response({"error": {"code": code, "message": message},
                              "request_id": g.request_id}, status, headers)

    @app.before_request
    def open_request():
        g.started = time.perf_counter()
        g.request_id = request_id_from(request.headers, settings.request_id_max_len)
        g.fields = {}
        g.message = "inference"
        g.event = "inference"
        g.counted = not (request.path in QUIET_PATHS and request.method == "GET")
        if g.counted:
            runtime.enter()
            tenant = metrics.tenants.from_headers(request.headers)
            if tenant:
                g.fields["tenant"] = tenant

    @app.teardown_request
    def close_request(_exc):
        if g.get("counted"):
            runtime.leave()

    @app.after_request
    def log_request(response: Response):
        response.headers["X-Request-Id"] = g.request_id
        if not g.counted:
            return response
        latency_s = time.perf_counter() - g.started
        status = response.status_code
        client_gone = request.environ.get("waitress.client_disconnected")
        if client_gone and client_gone():
            g.fields["client_gone"] = True
        events.emit(g.event, g.message, level_for_status(status),
                    request_id=g.request_id, status=status, latency_ms=round(latency_s * 1000, 3),
                    method=request.method, path=sanitise(request.path, 128) or "/",
                    input_bytes=request.content_length or 0,
                    **g.fields)
        metrics.observe_request(status, latency_s, g.fields, g.event)
        return response

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.errorhandler(QueueFull)
    def queue_full(_exc: QueueFull):
        return error_response(429, "queue_full", "too many requests queued; retry later",
                              {"Retry-After": str(settings.retry_after_s)})

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = STATUS_CODES.get(exc.code, "http_error")
        message = exc.description or code
        if exc.code == 413:
            message = f"request body is larger than {settings.max_body_bytes} bytes"
        return error_response(exc.code, code, message)

    @app.errorhandler(Exception)
    def server_fault(exc: Exception):
        # the trace goes to the log line, never to the client
        g.fields["trace"] = traceback.format_exc(limit=30)
        return error_response(500, "internal_error", "internal server error")

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
        if not runtime.is_model_handler:
            runtime.check_serving()
            body, status, headers = runtime.handler(request)
            return Response(body, status=status, headers=headers)
        if path:
            raise NotFound(f"no such path /{sanitise(path, 64)}; POST to / for inference")
        if request.method == "GET":
            g.event, g.message = "metadata", "metadata"
            return json_response({**model_metadata(runtime), "request_id": g.request_id})
        if request.method != "POST":
            raise MethodNotAllowed(f"{request.method} is not allowed; POST an input to /",
                                   headers={"Allow": "GET, POST"})
        try:
            query = request.args
        except UnicodeDecodeError:  # raw non-UTF-8 bytes in the request line (found by fuzzing)
            raise BadRequest("query string is not valid UTF-8", code="invalid_query") from None
        inference_request = InferenceRequest(
            body=request_body(request), content_type=request.content_type or "",
            headers=request.headers, query=query, request_id=g.request_id,
            method=request.method, path=request.path)
        body, fields = runtime.infer(inference_request,
                                     client_gone=request.environ.get("waitress.client_disconnected"),
                                     log_fields=g.fields)
        g.fields.update(fields)
        identity = runtime.model.identity
        return json_response({**body, "model_name": identity.model_name,
                              "model_version": identity.model_version, "request_id": g.request_id})

    return app


def model_metadata(runtime) -> dict:
    return {**runtime.model.identity.fields(), "source_commit": runtime.settings.source_commit or None,
            "ready": runtime.ready,
            "batch_size": runtime.settings.batch_size, **runtime.handler.metadata()}
