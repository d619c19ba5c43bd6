"""Compatibility with plain python3-http handlers: `handle(event, context)`.

Same Event/Context shape as OpenFaaS's python3-http template, so an existing
handler.py works unchanged, with two fixes: a bytes body is returned as bytes
(python3-http stringifies it), and errors become JSON, not HTML.
"""
import json
import os

from .request_body import request_body


class Event:
    def __init__(self, request):
        self.body = request_body(request)
        self.headers = request.headers
        self.method = request.method
        self.query = request.args
        self.path = request.path


class Context:
    def __init__(self):
        self.hostname = os.getenv("HOSTNAME", "localhost")


class PlainHandler:
    """Wraps a module that defines handle(event, context)."""

    def __init__(self, module):
        self._handle = module.handle

    def __call__(self, request):
        """Returns (body bytes, status, headers)."""
        res = self._handle(Event(request), Context())
        if not isinstance(res, dict):
            res = {"body": res}
        status = int(res.get("statusCode", 200))
        headers = dict(res.get("headers") or {})
        body = res.get("body", "")
        if isinstance(body, (bytes, bytearray)):
            headers.setdefault("Content-Type", "application/octet-stream")
            return bytes(body), status, headers
        if isinstance(body, (dict, list)):
            headers.setdefault("Content-Type", "application/json")
            return json.dumps(body).encode(), status, headers
        headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        return ("" if body is None else str(body)).encode(), status, headers
