"""The fuzzed request path: the real classifier, in-process, behind the real app.

One fuzz input is one HTTP request, laid out as

    byte 0   method and path     (mostly POST /)
    byte 1   Content-Type        (the accepted ones, near misses, garbage, none)
    byte 2   body encoding       raw | JSON {"image": base64(body)} | JSON as sent | JSON, body as the string
    byte 3   query string        (topk=..., repeated, empty, garbage)
    then four length-prefixed fields (1 length byte each): request id, tenant,
    an extra header's value, raw query bytes; the rest is the body.

so a seed is a real photo (JPEG/PNG/WebP, re-encoded small) behind four
control bytes, and libFuzzer's mutations reach every part. `check()` sends the
request straight into the WSGI app (as waitress would hand it over: header
values are latin-1 text without CR/LF, as a server accepts them) and checks the
properties:

- never a 5xx for client input (every request here is client input);
- no exception escapes the app;
- exactly one log line per request (none for GET /ready and /metrics), one JSON
  object on one line, carrying the request id the response echoes;
- the answer is JSON (errors: {"error": {...}, "request_id": ...}, no trace).

Memory: `replay_rss_growth()` replays inputs (a campaign's corpus) until RSS has
settled, then many times more, each time under a new request id and tenant; RSS
must stay put (fuzz_request.py runs it after every campaign).
"""
from __future__ import annotations

import base64
import ctypes
import ctypes.util
import gc
import io
import json
import os
import sys
from pathlib import Path

from loadkit.localrun import import_function, proc_kib

REPO = Path(__file__).resolve().parents[2]
CLASSIFIER = REPO / "functions" / "classifier"
ARTIFACTS = Path(os.environ.get("FUZZ_ARTIFACTS_DIR") or REPO / "artifacts" / "classifier")
MAX_PIXELS = 4_000_000  # small limits keep an execution fast; the checks are the same
MAX_BODY = 2 * 1024 * 1024

ROUTES = [("POST", "/")] * 10 + [("GET", "/"), ("PUT", "/"), ("DELETE", "/"), ("OPTIONS", "/"),
                                 ("HEAD", "/"), ("POST", "/predict"), ("POST", "//"),
                                 ("GET", "/ready"), ("GET", "/metrics"), ("POST", "/ready"),
                                 ("POST", "/%00"), ("PATCH", "/x/../")]
CONTENT_TYPES = [None, "image/jpeg", "image/png", "image/webp", "application/octet-stream",
                 "application/json", "application/json; charset=utf-8", "IMAGE/JPEG", "image/jpeg;",
                 "image/gif", "text/plain", "multipart/form-data; boundary=x",
                 "application/x-www-form-urlencoded", "", " ", "image/", ";;", "application/json;q=1"]
QUERIES = ["", "topk=5", "topk=1", "topk=20", "topk=21", "topk=0", "topk=-1", "topk=abc",
           "topk=%C2%B2", "topk=1&topk=2", "topk=", "topk=99999999999999999999", "a=b&&c", "%zz",
           "topk=3;x=1"]
QUIET = {"/ready", "/metrics"}
HEADER_FIELDS = 4


def load_classifier():
    """The classifier's handler class, from functions/classifier/handler.py (package
    `fuzzed_classifier`: its modules are fuzzed_classifier.handler, .preprocessing...)."""
    return import_function(CLASSIFIER, "fuzzed_classifier").Classifier


class LineCounter(io.TextIOBase):
    """The log stream: keeps the lines of the current request only (bounded memory)."""

    def __init__(self):
        self.lines: list[str] = []
        self._partial = ""

    def writable(self):
        return True

    def write(self, text: str) -> int:
        data = self._partial + text
        *complete, self._partial = data.split("\n")
        self.lines.extend(complete)
        return len(text)

    def take(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines


class Target:
    """The classifier assembled in this process, model loaded."""

    def __init__(self):
        from torchfaas.assembly import assemble
        from torchfaas.toolkit import ImageSettings

        self.stream = LineCounter()
        settings = ImageSettings(artifacts_dir=str(ARTIFACTS), function_name="classifier", max_pixels=MAX_PIXELS,
                            max_body_bytes=MAX_BODY, tenants="acme,globex", batch_delay_ms=0.0)
        self.function = assemble(settings, load_classifier()(), self.stream)
        if not self.function.runtime.load():
            raise RuntimeError("the classifier did not load: " + "\n".join(self.stream.take()))
        self.stream.take()  # the model_loaded line
        self.app = self.function.app
        self.executions = 0

    def close(self):
        if self.function.runtime.batcher is not None:
            self.function.runtime.batcher.stop()


def _field(data: bytes, at: int) -> tuple[bytes, int]:
    if at >= len(data):
        return b"", at
    n = data[at]
    return data[at + 1:at + 1 + n], at + 1 + n


def header_text(raw: bytes) -> str:
    """Bytes as a header value a server hands to the app: latin-1, no CR/LF/NUL."""
    return raw.decode("latin-1").translate({0: None, 10: None, 13: None}).strip(" \t")


def decode(data: bytes) -> dict:
    """A fuzz input -> the request it stands for."""
    head = data[:4].ljust(4, b"\0")
    method, path = ROUTES[head[0] % len(ROUTES)]
    content_type = CONTENT_TYPES[head[1] % len(CONTENT_TYPES)]
    mode = head[2] % 4
    query = QUERIES[head[3] % len(QUERIES)]
    at = 4
    fields = []
    for _ in range(HEADER_FIELDS):
        value, at = _field(data, at)
        fields.append(value)
    request_id, tenant, extra, raw_query = fields
    body = data[at:]
    if mode == 1:
        body = json.dumps({"image": base64.b64encode(body).decode()}).encode()
        content_type = "application/json"
    elif mode == 3:
        body = json.dumps({"image": body.decode("latin-1")}).encode()
        content_type = "application/json"
    elif mode == 2 and content_type is None:
        content_type = "application/json"
    if raw_query:
        query = (query + "&" if query else "") + raw_query.decode("latin-1")
    headers = {}
    if request_id:
        headers["X-Request-Id" if request_id[0] % 3 else "X-Call-Id"] = header_text(request_id[1:])
    if tenant:
        headers["X-Tenant-Id"] = header_text(tenant)
    if extra:
        name = ["Accept", "Content-Encoding", "Transfer-Encoding", "X-Forwarded-For", "Expect",
                "Authorization", "Content-Language", "Traceparent"][extra[0] % 8]
        headers[name] = header_text(extra[1:])
    return {"method": method, "path": path, "content_type": content_type, "query": query,
            "headers": headers, "body": body}


def encode(body: bytes, *, route: int = 0, content_type: int = 1, mode: int = 0, query: int = 1,
           request_id: bytes = b"\x01fuzz-seed", tenant: bytes = b"acme", extra: bytes = b"",
           raw_query: bytes = b"") -> bytes:
    """The fuzz input for a request (seeds and regression cases)."""
    out = bytes([route, content_type, mode, query])
    for value in (request_id, tenant, extra, raw_query):
        out += bytes([len(value[:255])]) + value[:255]
    return out + body


def environ_for(request: dict) -> dict:
    body = request["body"]
    path = request["path"]
    environ = {
        "REQUEST_METHOD": request["method"], "SCRIPT_NAME": "", "PATH_INFO": path.replace("%00", "\0"),
        "QUERY_STRING": request["query"], "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False,
        "wsgi.run_once": False, "wsgi.input_terminated": True,
    }
    if request["content_type"] is not None:
        environ["CONTENT_TYPE"] = request["content_type"]
    for name, value in request["headers"].items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


class PropertyViolation(AssertionError):
    pass


def check(target: Target, data: bytes) -> int:
    """Send one fuzz input through the app; raise PropertyViolation if a property breaks."""
    request = decode(data)
    status_line: list[str] = []
    headers: list = []

    def start_response(status, response_headers, exc_info=None):
        status_line.append(status)
        headers.extend(response_headers)

    target.stream.take()
    chunks = target.app(environ_for(request), start_response)
    try:
        body = b"".join(chunks)
    finally:
        if hasattr(chunks, "close"):
            chunks.close()
    target.executions += 1
    status = int(status_line[0].split()[0])
    header_map = {name.lower(): value for name, value in headers}
    lines = target.stream.take()
    where = f"{request['method']} {request['path']}?{request['query'][:60]!r} " \
            f"content-type={request['content_type']!r} -> {status}"
    if status >= 500:
        raise PropertyViolation(f"5xx for client input: {where}: {body[:300]!r} "
                                f"log: {[line[:2000] for line in lines]}")
    quiet = request["method"] == "GET" and request["path"] in QUIET
    if len(lines) != (0 if quiet else 1):
        raise PropertyViolation(f"{len(lines)} log lines for one request: {where}: {lines}")
    rid = header_map.get("x-request-id")
    if not rid:
        raise PropertyViolation(f"no X-Request-Id: {where}")
    if not quiet:
        line = json.loads(lines[0])  # one JSON object on one line
        if line.get("request_id") != rid or line.get("status") != status:
            raise PropertyViolation(f"log line does not match the answer: {where}: {line}")
    if request["method"] != "HEAD" and request["path"] != "/metrics":
        payload = json.loads(body)
        if status >= 400 and (set(payload) != {"error", "request_id"} or b"Traceback" in body):
            raise PropertyViolation(f"error body off contract: {where}: {body[:300]!r}")
    return status


def with_identity(data: bytes, request_id: bytes, tenant: bytes) -> bytes:
    """The same fuzz input sent under another request id value and tenant."""
    head = data[:4].ljust(4, b"\0")
    at, fields = 4, []
    for _ in range(HEADER_FIELDS):
        value, at = _field(data, at)
        fields.append(value)
    header = fields[0][:1] or b"\x01"  # keeps the header it chose (X-Request-Id or X-Call-Id)
    return encode(data[at:], route=head[0], content_type=head[1], mode=head[2], query=head[3],
                  request_id=header + request_id, tenant=tenant, extra=fields[2], raw_query=fields[3])


_LIBC = ctypes.CDLL(ctypes.util.find_library("c"))


def settled_rss_mib() -> float:
    """RSS once garbage is collected and malloc has handed its free pages back: what
    the process still holds, not what its allocator kept from its largest input."""
    gc.collect()
    _LIBC.malloc_trim(0)
    return proc_kib(os.getpid(), "VmRSS") / 1024


def replay_rss_growth(target: Target, inputs: list[bytes], executions: int = 6000,
                      settle_passes: int = 3) -> dict:
    """RSS growth per request over `executions` requests replaying `inputs`, in two halves.

    A leak grows with every request; what a campaign's RSS also shows is the
    allocator's high-water mark, set by the largest input so far (a 4-megapixel
    WebP takes ~100 MiB while it is decoded, and glibc keeps much of it). The
    settle passes reach that mark; every later pass sends the same inputs under a
    new request id and tenant, so memory kept per request or per client value
    grows while the high-water mark cannot move. A leak grows in both halves; a
    one-off step (a lazily made cache, an allocator's new arena) in one only, so
    `leak_kib_per_request` is the smaller half's growth.
    """
    if not inputs:
        raise ValueError("no inputs to replay")
    half = max(1, -(-executions // (2 * len(inputs))))  # passes per half
    samples = []
    for n in range(settle_passes + 2 * half):
        if n in (settle_passes, settle_passes + half):
            samples.append(settled_rss_mib())
        for i, data in enumerate(inputs):
            check(target, with_identity(data, f"replay-{n}-{i}".encode(), f"tenant-{n}".encode()))
    samples.append(settled_rss_mib())
    per_half = half * len(inputs)
    first, second = samples[1] - samples[0], samples[2] - samples[1]
    return {"inputs": len(inputs), "executions": 2 * per_half, "rss_mib": [round(v, 1) for v in samples],
            "leak_kib_per_request": round(max(0.0, min(first, second)) * 1024 / per_half, 3)}
