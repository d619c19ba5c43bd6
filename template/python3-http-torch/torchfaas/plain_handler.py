"""Compatibility with plain python3-http handlers: `handle(event, context)`.

Same Event/Context shape as OpenFaaS's python3-http template, so an existing
handler.py works unchanged, with two fixes: a bytes body is returned as bytes
(python3-http stringifies it), and errors become JSON, not HTML.

The module is adapted once, at load, into a `ModelHandler`: every path and method
is `inference`, `predict()` calls `handle()` in the request's own thread (no
batcher: `batched = False`) and `postprocess()` returns the HTTP answer as it is.
The runtime then serves it on the same path as any model.
"""
import json
import os

from flask import Response

from .model_handler import InferenceRequest, ModelHandler


class Event:
    def __init__(self, request: InferenceRequest):
        self.body = request.body
        self.headers = request.headers
        self.method = request.method
        self.query = request.query
        self.path = request.path


class Context:
    def __init__(self):
        self.hostname = os.getenv("HOSTNAME", "localhost")


class PlainHandler(ModelHandler):
    """Wraps a module that defines handle(event, context)."""

    # no model: log lines and metrics name none, as before a model loads
    model_name = "unknown"
    model_version = "unknown"
    batched = False

    def __init__(self, module):
        self._handle = module.handle

    def load(self, artifacts_dir, manifest, settings) -> None:
        pass

    def route(self, method: str, path: str) -> str:
        return "inference"  # handle() answers every path and method itself

    def preprocess(self, request: InferenceRequest) -> Event:
        return Event(request)

    def predict(self, items: list) -> list:
        return [self._handle(event, Context()) for event in items]

    def postprocess(self, output, request: InferenceRequest) -> Response:
        """handle()'s result (a dict with statusCode/body/headers, or a bare body) as it is sent."""
        res = output if isinstance(output, dict) else {"body": output}
        status = int(res.get("statusCode", 200))
        headers = dict(res.get("headers") or {})
        body = res.get("body", "")
        if isinstance(body, (bytes, bytearray)):
            headers.setdefault("Content-Type", "application/octet-stream")
            body = bytes(body)
        elif isinstance(body, (dict, list)):
            headers.setdefault("Content-Type", "application/json")
            body = json.dumps(body).encode()
        else:
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
            body = ("" if body is None else str(body)).encode()
        return Response(body, status=status, headers=headers)
